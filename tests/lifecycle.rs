//! Data that leaves (docs/lifecycle.md) on the file engine, through the public Rust API:
//! soft and hard deletes, truncation, retention rules by count and by age; every read
//! path after each operation, before and after a reopen and after a snapshot, checked
//! against a model written here; retries by id; the account domain's rules; a read-only
//! follower in another process. (The fault and power-cut loops over a workload with
//! lifecycle operations are in tests/lifecycle_loops.rs.)

mod common;

use common::life::{check, drain, drain_tail, err, Model};
use common::procs::{self, Children};
use common::writers::{self, TestClock};
use evstore::account::{stream_name, Bank};
use evstore::store::lifecycle::Rule;
use evstore::store::{Event, EventInput, ExpectedVersion, Store, StoreOptions, StreamAppend};
use evstore::wal::FsyncPolicy;
use evstore::ErrorKind;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Held (shared) by every open of this file and (exclusively) while the follower test
/// spawns its child, which inherits open descriptors (the LOCK file's) until its exec.
static SPAWNING: RwLock<()> = RwLock::new(());

/// Small segments (so that sealed segments and their index files take part), the test's
/// clock.
fn options(fsync: FsyncPolicy, clock: &TestClock) -> StoreOptions {
    StoreOptions {
        fsync,
        max_segment_size: 64 << 10,
        preallocate: false,
        clock: clock.clock(),
        ..StoreOptions::default()
    }
}

fn open(dir: &Path, options: StoreOptions) -> Arc<Store> {
    let _no_spawn = SPAWNING.read().unwrap_or_else(|e| e.into_inner());
    let mut tries = 0;
    loop {
        match Store::open(dir, options.clone(), Vec::new()) {
            Ok((s, _)) => return Arc::new(s),
            // A child spawned elsewhere may hold an inherited LOCK descriptor a moment.
            Err(e) if e.kind == ErrorKind::Locked && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}

fn payloads(tag: &str, n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = format!("{tag}#{i}|").into_bytes();
            // Three times the size named: the scenario's log spans several segments.
            p.resize(3 * size, b'a' + (i % 26) as u8);
            p
        })
        .collect()
}

fn append(store: &Store, m: &mut Model, clock: &TestClock, stream: &str, ps: &[Vec<u8>]) {
    clock.set(clock.now() + 1_000);
    let ins: Vec<EventInput<'_>> = ps.iter().map(|p| EventInput::new("T", p)).collect();
    let first = if stream.is_empty() {
        let mut first = None;
        for i in &ins {
            let p = store.append_event(i.event_type, i.payload).unwrap();
            first.get_or_insert(p);
        }
        first.unwrap()
    } else {
        store
            .append(stream, ExpectedVersion::Any, &ins)
            .unwrap()
            .first_position
    };
    assert_eq!(first, m.next_position());
    m.append(stream, clock.now(), ps);
}

const POLICIES: [FsyncPolicy; 3] = [
    FsyncPolicy::Always,
    FsyncPolicy::Batch(Duration::from_millis(2)),
    FsyncPolicy::Os,
];

// ---------------------------------------------------------------------------------------
// Every read path after each operation
// ---------------------------------------------------------------------------------------

/// One step of the scenario: does something to the store and the model.
type Step = fn(&Store, &mut Model, &TestClock);

fn scenario() -> Vec<(&'static str, Step)> {
    fn rule(c: u64) -> Rule {
        Rule {
            max_count: c,
            max_age_us: 0,
        }
    }
    vec![
        ("truncate order-1 before 2", |s, m, _| {
            let p = s.truncate_stream("order-1", 2, None).unwrap();
            assert_eq!(p, m.truncate("order-1", 2));
        }),
        ("soft delete order-2", |s, m, _| {
            let v = m.versions["order-2"];
            let p = s
                .delete_stream("order-2", ExpectedVersion::Exact(v), false, None)
                .unwrap();
            assert_eq!(p, m.delete("order-2", false));
        }),
        ("append to the soft-deleted order-2", |s, m, c| {
            // It is no stream for writers: its old version and EXISTS fail (actual:
            // none), NO_STREAM continues its versions.
            let v = m.versions["order-2"];
            assert_eq!(s.stream_version("order-2").unwrap(), None);
            for expected in [ExpectedVersion::Exact(v), ExpectedVersion::Exists] {
                let e = err(
                    s.append("order-2", expected, &[EventInput::new("T", b"x")]),
                    "deleted",
                );
                assert_eq!(e.kind, ErrorKind::WrongExpectedVersion, "{e}");
                assert_eq!(e.detail().actual_version, Some(None), "{e}");
            }
            let again = payloads("o2-again", 2, 1500);
            c.set(c.now() + 1_000);
            let ins: Vec<EventInput<'_>> = again.iter().map(|p| EventInput::new("T", p)).collect();
            let r = s
                .append("order-2", ExpectedVersion::NoStream, &ins)
                .unwrap();
            assert_eq!(r.first_position, m.next_position());
            assert_eq!(r.stream_versions, vec![v + 2]);
            m.append("order-2", c.now(), &again);
        }),
        ("a category rule on tele-", |s, m, c| {
            let p = s.set_retention("tele-", true, rule(2), None).unwrap();
            assert_eq!(p, m.rule("tele-", true, rule(2), c.now()));
        }),
        ("tele-b's own rule: nothing comes back", |s, m, c| {
            let p = s.set_retention("tele-b", false, rule(3), None).unwrap();
            assert_eq!(p, m.rule("tele-b", false, rule(3), c.now()));
        }),
        ("hard delete x", |s, m, _| {
            let p = s
                .delete_stream("x", ExpectedVersion::Any, true, None)
                .unwrap();
            assert_eq!(p, m.delete("x", true));
        }),
        ("tele-a grows under its count rule", |s, m, c| {
            append(s, m, c, "tele-a", &payloads("ta-more", 3, 900));
        }),
        (
            "tele-b's rule cleared: the category's applies",
            |s, m, c| {
                let p = s
                    .set_retention("tele-b", false, Rule::default(), None)
                    .unwrap();
                assert_eq!(p, m.rule("tele-b", false, Rule::default(), c.now()));
            },
        ),
        ("truncate order-1 lower: nothing comes back", |s, m, _| {
            let p = s.truncate_stream("order-1", 1, None).unwrap();
            assert_eq!(p, m.truncate("order-1", 1));
        }),
        ("truncate order-3 to its end", |s, m, _| {
            let v = m.versions["order-3"];
            let p = s.truncate_stream("order-3", v + 1, None).unwrap();
            assert_eq!(p, m.truncate("order-3", v + 1));
        }),
        ("soft delete tele-a, then more events", |s, m, c| {
            let p = s
                .delete_stream("tele-a", ExpectedVersion::Exists, false, None)
                .unwrap();
            assert_eq!(p, m.delete("tele-a", false));
            append(s, m, c, "tele-a", &payloads("ta-new", 4, 700));
            append(s, m, c, "", &payloads("single-late", 1, 300));
        }),
        ("the tele- rule cleared: nothing comes back", |s, m, c| {
            let p = s
                .set_retention("tele-", true, Rule::default(), None)
                .unwrap();
            assert_eq!(p, m.rule("tele-", true, Rule::default(), c.now()));
        }),
        (
            "soft delete order-2 again, then hard-delete it",
            |s, m, _| {
                let p = s
                    .delete_stream("order-2", ExpectedVersion::Any, false, None)
                    .unwrap();
                assert_eq!(p, m.delete("order-2", false));
                let p = s
                    .delete_stream("order-2", ExpectedVersion::Any, true, None)
                    .unwrap();
                assert_eq!(p, m.delete("order-2", true));
            },
        ),
    ]
}

fn fill(store: &Store, m: &mut Model, clock: &TestClock) {
    append(store, m, clock, "order-1", &payloads("o1", 5, 2000));
    append(store, m, clock, "", &payloads("single", 2, 500));
    append(store, m, clock, "order-2", &payloads("o2", 3, 1800));
    append(store, m, clock, "tele-a", &payloads("ta", 6, 1200));
    append(store, m, clock, "tele-b", &payloads("tb", 5, 2500));
    append(store, m, clock, "x", &payloads("x", 2, 3000));
    append(store, m, clock, "order-3", &payloads("o3", 4, 1000));
    append(store, m, clock, "order-1", &payloads("o1b", 2, 4000));
    append(store, m, clock, "tele-b", &payloads("tb2", 4, 1500));
}

fn every_read_obeys_every_operation(fsync: FsyncPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_700_000_000_000_000);
    let opts = options(fsync, &clock);
    let mut store = open(dir.path(), opts.clone());
    let mut m = Model::default();
    fill(&store, &mut m, &clock);
    assert!(
        store.stats().unwrap().segments >= 2,
        "the log spans segments"
    );
    check(&store, &m, clock.now(), "before any operation");
    for (name, step) in scenario() {
        step(&store, &mut m, &clock);
        check(&store, &m, clock.now(), name);
        // Compacted: the removed events' records leave the segments; every read the same.
        store.compact().unwrap();
        check(&store, &m, clock.now(), &format!("{name}, compacted"));
        store.close().unwrap();
        drop(store);
        store = open(dir.path(), opts.clone());
        check(&store, &m, clock.now(), &format!("{name}, reopened"));
        store.snapshot().unwrap();
        store.close().unwrap();
        drop(store);
        store = open(dir.path(), opts.clone());
        check(
            &store,
            &m,
            clock.now(),
            &format!("{name}, reopened from a snapshot"),
        );
    }
    // Without snapshots and index files: the state is rebuilt from the log alone.
    store.close().unwrap();
    drop(store);
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path(), opts);
    check(&store, &m, clock.now(), "rebuilt from the log");
}

#[test]
fn every_read_obeys_every_operation_under_always() {
    every_read_obeys_every_operation(POLICIES[0]);
}

#[test]
fn every_read_obeys_every_operation_under_batch() {
    every_read_obeys_every_operation(POLICIES[1]);
}

#[test]
fn every_read_obeys_every_operation_under_os() {
    every_read_obeys_every_operation(POLICIES[2]);
}

// ---------------------------------------------------------------------------------------
// Retention by age, with the test's clock
// ---------------------------------------------------------------------------------------

#[test]
fn a_rule_by_age_removes_events_as_the_clock_passes_them_without_any_call() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_000_000_000);
    let opts = options(FsyncPolicy::Os, &clock);
    let store = open(dir.path(), opts.clone());
    let mut m = Model::default();
    // Events at 1001 s, 1002 s, ... (append moves the clock 1 ms on each call; these
    // steps put whole seconds between them).
    for (i, stream) in ["m-1", "m-2", "", "m-1", "other", "m-2", "m-1"]
        .iter()
        .enumerate()
    {
        clock.set(1_000_000_000 + (i as u64 + 1) * 1_000_000 - 1_000);
        append(
            &store,
            &mut m,
            &clock,
            stream,
            &payloads(&format!("e{i}"), 1, 100),
        );
    }
    let rule = Rule {
        max_count: 0,
        max_age_us: 2_500_000,
    };
    assert_eq!(
        store.set_retention("m-", true, rule, None).unwrap(),
        m.rule("m-", true, rule, clock.now())
    );
    // Every stream (the empty prefix) keeps 6 s: it applies to "other", not to "m-"
    // streams (a longer prefix wins), never to events without a stream.
    let all = Rule {
        max_count: 0,
        max_age_us: 6_000_000,
    };
    assert_eq!(
        store.set_retention("", true, all, None).unwrap(),
        m.rule("", true, all, clock.now())
    );
    assert_eq!(store.retention("m-7", false).unwrap(), Some(rule));
    assert_eq!(store.retention("zzz", false).unwrap(), Some(all));
    assert_eq!(store.retention("", true).unwrap(), Some(all));
    assert_eq!(store.retention("m", true).unwrap(), None);
    // Cursors already open judge each call by the clock of that call. (A handle's clock
    // never goes back: a new handle is opened with the clock set before the last event.)
    store.close().unwrap();
    drop(store);
    clock.set(1_000_000_000 + 3_000_000);
    let store = open(dir.path(), opts.clone());
    let mut all = store.read_all(0).unwrap();
    let mut m1 = store.read_stream("m-1", 0).unwrap();
    assert_eq!(all.next().unwrap().unwrap().position, 0);
    assert_eq!(m1.next().unwrap().unwrap().position, 0);
    clock.set(1_000_000_000 + 7_000_000);
    // m-1's event at 4 s and m-2's at 2 s are older than 4.5 s now.
    assert_eq!(m1.next().unwrap().unwrap().position, 6);
    let rest: Vec<u64> = std::iter::from_fn(|| all.next().unwrap().map(|e| e.position)).collect();
    assert_eq!(rest, vec![2, 4, 5, 6]);
    let mut removed_seen = Vec::new();
    for t in [
        7_000_000u64,
        8_000_000,
        9_500_000,
        10_600_000,
        12_000_000,
        30_000_000,
    ] {
        clock.set(1_000_000_000 + t);
        check(&store, &m, clock.now(), &format!("clock at +{t} us"));
        removed_seen.push(store.stats().unwrap().removed_events);
    }
    // Time only ever removes more; at the end only the stream-less event is left.
    assert!(
        removed_seen.windows(2).all(|w| w[0] <= w[1]),
        "{removed_seen:?}"
    );
    assert!(removed_seen[0] < removed_seen[removed_seen.len() - 1]);
    let left = drain_tail(store.read_all(0).unwrap());
    assert_eq!(left.len(), 1);
    assert!(left[0].stream.is_empty());
    // The rules are in the log: a reopen (and the clock) keep judging the same way.
    store.close().unwrap();
    drop(store);
    let store = open(dir.path(), opts);
    check(&store, &m, clock.now(), "reopened at +30 s");
    // A clock that jumps back brings nothing back: the handle's clock never goes back.
    let late = clock.now();
    clock.set(1_000_000_000 + 8_000_000);
    check(&store, &m, late, "reopened, the clock set back");
}

// ---------------------------------------------------------------------------------------
// Hard deletes, soft deletes, expected versions
// ---------------------------------------------------------------------------------------

#[test]
fn a_hard_deleted_name_is_refused_by_every_read_and_write() {
    for fsync in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_700_000_000_000_000);
        let opts = options(fsync, &clock);
        let mut store = open(dir.path(), opts.clone());
        let id = |n: u8| Some([n; 16]);
        let e1 = [EventInput {
            id: id(1),
            subject: None,
            ..EventInput::new("T", b"one")
        }];
        store
            .append("gone", ExpectedVersion::NoStream, &e1)
            .unwrap();
        store
            .append("kept", ExpectedVersion::Any, &[EventInput::new("T", b"k")])
            .unwrap();
        store
            .delete_stream("gone", ExpectedVersion::Exact(0), true, None)
            .unwrap();
        for round in ["at once", "reopened"] {
            let deleted = |r: evstore::Result<()>, what: &str| {
                let e = err(r, what);
                assert_eq!(e.kind, ErrorKind::StreamDeleted, "{round}, {what}: {e}");
                assert!(e.message.contains("'gone'"), "{e}");
            };
            let ev = [EventInput::new("T", b"again")];
            for expected in [
                ExpectedVersion::Any,
                ExpectedVersion::NoStream,
                ExpectedVersion::Exists,
                ExpectedVersion::Exact(0),
            ] {
                deleted(store.append("gone", expected, &ev).map(|_| ()), "append");
            }
            let n = store.next_position().unwrap();
            // A multi-stream append naming it writes nothing at all.
            let parts = [
                StreamAppend {
                    stream: "kept",
                    expected: ExpectedVersion::Any,
                    events: &ev,
                },
                StreamAppend {
                    stream: "gone",
                    expected: ExpectedVersion::Any,
                    events: &ev,
                },
            ];
            deleted(store.append_multi(&parts).map(|_| ()), "append_multi");
            assert_eq!(
                store.next_position().unwrap(),
                n,
                "{round}: nothing written"
            );
            deleted(store.read_stream("gone", 0).map(|_| ()), "read_stream");
            deleted(
                store.read_stream_backward("gone", 0).map(|_| ()),
                "read_stream_backward",
            );
            deleted(store.stream_version("gone").map(|_| ()), "stream_version");
            for hard in [false, true] {
                deleted(
                    store
                        .delete_stream("gone", ExpectedVersion::Any, hard, None)
                        .map(|_| ()),
                    "delete",
                );
            }
            deleted(
                store.truncate_stream("gone", 0, None).map(|_| ()),
                "truncate",
            );
            assert!(drain_tail(store.read_category("gon", 0).unwrap()).is_empty());
            assert!(store
                .list_streams()
                .unwrap()
                .iter()
                .all(|s| s.name != "gone"));
            let x = err(store.read_event(0), "read_event");
            assert!(x.message.contains("hard-deleted"), "{x}");
            // A retry of the append that created it is still a retry (its old position),
            // and its event stays removed.
            let r = store
                .append("gone", ExpectedVersion::NoStream, &e1)
                .unwrap();
            assert_eq!(r.first_position, 0);
            assert_eq!(store.next_position().unwrap(), n);
            store.snapshot().unwrap();
            store.close().unwrap();
            drop(store);
            store = open(dir.path(), opts.clone());
        }
    }
}

/// Opens the store in `dir` again at each call, closing the handle before: by turns a
/// plain reopen, a reopen from a snapshot written first, and a rebuild from the log alone
/// (no snapshot, no index files).
fn reopener(dir: &Path, opts: StoreOptions) -> impl FnMut() -> Arc<Store> {
    let dir = dir.to_owned();
    let mut held: Option<Arc<Store>> = None;
    let mut turn = 0;
    move || {
        if let Some(s) = held.take() {
            match turn % 3 {
                1 => {
                    s.snapshot().unwrap();
                }
                2 => {
                    s.close().unwrap();
                    std::fs::remove_dir_all(dir.join("snapshots")).ok();
                    std::fs::remove_dir_all(dir.join("index")).ok();
                }
                _ => {}
            }
            s.close().unwrap();
            turn += 1;
        }
        let s = open(&dir, opts.clone());
        held = Some(s.clone());
        s
    }
}

#[test]
fn a_soft_deleted_stream_is_no_stream_for_writers_until_appended_to_again() {
    for fsync in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_700_000_000_000_000);
        let mut open = reopener(dir.path(), options(fsync, &clock));
        writers::a_soft_deleted_stream_is_no_stream_until_appended_to_again(&mut open);
    }
}

#[test]
fn a_truncation_changes_only_what_readers_see() {
    for fsync in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_700_000_000_000_000);
        let mut open = reopener(dir.path(), options(fsync, &clock));
        writers::a_truncation_changes_only_what_readers_see(&mut open);
    }
}

#[test]
fn a_stream_operation_checks_tombstone_then_existence_then_version_then_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_700_000_000_000_000);
    let mut open = reopener(dir.path(), options(FsyncPolicy::Os, &clock));
    writers::a_stream_operation_checks_tombstone_then_existence_then_version_then_bounds(&mut open);
}

#[test]
fn a_rule_changed_or_cleared_brings_no_event_back() {
    for fsync in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_700_000_000_000_000);
        let mut open = reopener(dir.path(), options(fsync, &clock));
        writers::a_rule_changed_or_cleared_brings_no_event_back(&mut open);
    }
}

#[test]
fn a_rule_by_age_cleared_or_a_clock_set_back_brings_no_event_back() {
    for snapshot in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_700_000_000_000_000);
        let mut open = reopener(dir.path(), options(FsyncPolicy::Os, &clock));
        if snapshot {
            // The next handle then opens from a snapshot.
            drop(open());
        }
        writers::a_rule_by_age_cleared_or_a_clock_set_back_brings_no_event_back(&mut open, &clock);
    }
}

// ---------------------------------------------------------------------------------------
// Idempotent retries
// ---------------------------------------------------------------------------------------

/// A lifecycle operation made with an id.
type Op = dyn Fn(&Store, [u8; 16]) -> evstore::Result<u64>;

#[test]
fn a_retried_operation_with_its_id_returns_the_first_position_and_writes_nothing() {
    for fsync in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_700_000_000_000_000);
        let opts = options(fsync, &clock);
        let mut store = open(dir.path(), opts.clone());
        let evs = [EventInput::new("T", b"x"), EventInput::new("T", b"y")];
        for s in ["a", "b", "c"] {
            store.append(s, ExpectedVersion::Any, &evs).unwrap();
        }
        let event_id = [9u8; 16];
        store
            .append(
                "d",
                ExpectedVersion::Any,
                &[EventInput {
                    id: Some(event_id),
                    subject: None,
                    ..EventInput::new("T", b"z")
                }],
            )
            .unwrap();
        let rule = Rule {
            max_count: 1,
            max_age_us: 0,
        };
        let ops: Vec<(&str, Box<Op>)> = vec![
            (
                "delete",
                Box::new(|s, id| s.delete_stream("a", ExpectedVersion::Exact(1), false, Some(id))),
            ),
            (
                "truncate",
                Box::new(|s, id| s.truncate_stream("b", 1, Some(id))),
            ),
            (
                "retention",
                Box::new(move |s, id| s.set_retention("c", false, rule, Some(id))),
            ),
            (
                "hard delete",
                Box::new(|s, id| s.delete_stream("d", ExpectedVersion::Any, true, Some(id))),
            ),
        ];
        let mut firsts = Vec::new();
        for (i, (name, op)) in ops.iter().enumerate() {
            let id = [i as u8 + 1; 16];
            let first = op(&store, id).unwrap();
            let n = store.next_position().unwrap();
            assert_eq!(op(&store, id).unwrap(), first, "{fsync:?} {name}: a retry");
            assert_eq!(store.next_position().unwrap(), n, "{name}: nothing written");
            firsts.push((id, first));
        }
        for round in ["open", "reopened", "reopened from a snapshot"] {
            let n = store.next_position().unwrap();
            for ((name, op), &(id, first)) in ops.iter().zip(&firsts) {
                // Even where the first one's checks no longer hold (the expected version,
                // the hard-deleted stream), a retry is answered as a retry.
                assert_eq!(op(&store, id).unwrap(), first, "{round}: {name}");
            }
            assert_eq!(
                store.next_position().unwrap(),
                n,
                "{round}: nothing written"
            );
            // The same id with another operation, or an event's id, is refused.
            let e = err(store.truncate_stream("b", 0, Some(firsts[1].0)), round);
            assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
            let e = err(
                store.delete_stream("b", ExpectedVersion::Any, false, Some(firsts[0].0)),
                round,
            );
            assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
            assert!(e.message.contains("soft delete of stream 'a'"), "{e}");
            let e = err(
                store.truncate_stream("b", 0, Some(event_id)),
                "an event's id",
            );
            assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
            // The detail names the record that holds the id: the event "d" got.
            assert_eq!(e.detail().position, Some(6), "{e}");
            // An append whose event has an operation's id is refused too.
            let e = err(
                store.append(
                    "b",
                    ExpectedVersion::Any,
                    &[EventInput {
                        id: Some(firsts[2].0),
                        subject: None,
                        ..EventInput::new("T", b"w")
                    }],
                ),
                "an operation's id on an event",
            );
            assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
            assert_eq!(e.detail().position, Some(firsts[2].1), "{e}");
            assert!(e.message.contains("lifecycle entry"), "{e}");
            assert_eq!(
                store.next_position().unwrap(),
                n,
                "{round}: nothing written"
            );
            if round == "reopened" {
                store.snapshot().unwrap();
            }
            store.close().unwrap();
            drop(store);
            store = open(dir.path(), opts.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cursors already open
// ---------------------------------------------------------------------------------------

#[test]
fn a_cursor_already_open_stops_returning_events_once_they_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_700_000_000_000_000);
    let store = open(dir.path(), options(FsyncPolicy::Os, &clock));
    for i in 0..6u8 {
        let s = if i % 2 == 0 { "p-even" } else { "p-odd" };
        store
            .append(s, ExpectedVersion::Any, &[EventInput::new("T", &[i])])
            .unwrap();
    }
    let mut all = store.read_all(0).unwrap();
    let mut cat = store.read_category("p-", 0).unwrap();
    let mut odd = store.read_stream("p-odd", 0).unwrap();
    assert_eq!(all.next().unwrap().unwrap().payload, &[0]);
    assert_eq!(cat.next().unwrap().unwrap().payload, &[0]);
    assert_eq!(odd.next().unwrap().unwrap().payload, &[1]);
    store
        .delete_stream("p-odd", ExpectedVersion::Any, false, None)
        .unwrap();
    store.truncate_stream("p-even", 2, None).unwrap();
    let rest = |c: &mut Box<dyn evstore::store::TailCursor>| {
        let mut v = Vec::new();
        while let Some(e) = c.next().unwrap() {
            v.push(e.payload[0]);
        }
        v
    };
    assert_eq!(rest(&mut all), vec![4]);
    assert_eq!(rest(&mut cat), vec![4]);
    assert!(odd.next().unwrap().is_none());
    // A later append shows up in the cursors that tail, at its own position.
    store
        .append("p-odd", ExpectedVersion::Any, &[EventInput::new("T", &[9])])
        .unwrap();
    assert_eq!(rest(&mut all), vec![9]);
    assert_eq!(rest(&mut cat), vec![9]);
    assert_eq!(all.position(), store.next_position().unwrap());
}

// ---------------------------------------------------------------------------------------
// The account domain
// ---------------------------------------------------------------------------------------

fn open_bank(dir: &Path, options: StoreOptions) -> Bank {
    let _no_spawn = SPAWNING.read().unwrap_or_else(|e| e.into_inner());
    let mut tries = 0;
    loop {
        match Bank::open(dir, options.clone()) {
            Ok((b, _)) => return b,
            Err(e) if e.kind == ErrorKind::Locked && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("opening {}: {e}", dir.display()),
        }
    }
}

/// How the account test reopens its bank.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reopen {
    Plainly,
    AfterSnapshot,
    /// After a compaction (which erases the deleted account's events and writes a
    /// snapshot).
    AfterCompaction,
}

/// Reopens the bank: plainly, after a snapshot or after a compaction.
fn reopen(bank: Bank, dir: &Path, options: &StoreOptions, how: Reopen) -> Bank {
    match how {
        Reopen::Plainly => {}
        Reopen::AfterSnapshot => {
            bank.store().snapshot().unwrap();
        }
        Reopen::AfterCompaction => {
            bank.store().compact().unwrap();
        }
    }
    bank.store().close().unwrap();
    drop(bank);
    open_bank(dir, options.clone())
}

fn gone(bank: &Bank, id: &str, when: &str) {
    for (what, r) in [
        ("get", bank.get(id).map(|_| ())),
        ("get_at", bank.get_at(id, u64::MAX).map(|_| ())),
        ("deposit", bank.deposit(id, 1).map(|_| ())),
        ("withdraw", bank.withdraw(id, 1).map(|_| ())),
        ("close", bank.close_account(id).map(|_| ())),
        ("transfer", bank.transfer(id, "keep", 1).map(|_| ())),
    ] {
        let e = err(r, what);
        assert_eq!(e.kind, ErrorKind::NotFound, "{when}: {what}: {e}");
    }
}

#[test]
fn an_account_stream_is_deleted_only_at_a_zero_balance_and_the_account_is_gone_after() {
    for how in [
        Reopen::Plainly,
        Reopen::AfterSnapshot,
        Reopen::AfterCompaction,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = TestClock::new(1_700_000_000_000_000);
        let opts = options(FsyncPolicy::Batch(Duration::from_millis(2)), &clock);
        let mut bank = open_bank(dir.path(), opts.clone());
        bank.open_account("a1", 100, None).unwrap();
        bank.open_account("keep", 5, None).unwrap();
        let store = bank.store().clone();
        let s = stream_name("a1");
        for hard in [false, true] {
            let e = err(
                store.delete_stream(&s, ExpectedVersion::Any, hard, None),
                "balance",
            );
            assert_eq!(e.kind, ErrorKind::BalanceNotZero, "{e}");
            assert!(e.message.contains("100"), "{e}");
        }
        bank.withdraw("a1", 60).unwrap();
        bank.transfer("a1", "keep", 40).unwrap();
        assert_eq!(bank.get("a1").unwrap().balance, 0);
        // The guard makes the delete expect the version it checked: a stale expected
        // version is refused before anything is written.
        let v = store.stream_version(&s).unwrap().unwrap();
        let e = err(
            store.delete_stream(&s, ExpectedVersion::Exact(v - 1), false, None),
            "stale",
        );
        assert_eq!(e.kind, ErrorKind::WrongExpectedVersion, "{e}");
        store
            .delete_stream(&s, ExpectedVersion::Any, false, None)
            .unwrap();
        drop(store);
        gone(&bank, "a1", "deleted");
        assert_eq!(bank.get("keep").unwrap().balance, 45);
        bank = reopen(bank, dir.path(), &opts, how);
        gone(&bank, "a1", "deleted, reopened");
        // A new account of the same id continues the stream's versions.
        bank.open_account("a1", 7, Some("EUR")).unwrap();
        let a = bank.get("a1").unwrap();
        assert_eq!(
            (a.balance, a.currency.as_str(), a.stream_version),
            (7, "EUR", Some(v + 1))
        );
        assert_eq!(bank.get_at("a1", u64::MAX).unwrap().balance, 7);
        let e = err(bank.open_account("a1", 1, None), "twice");
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        bank = reopen(bank, dir.path(), &opts, how);
        let a = bank.get("a1").unwrap();
        assert_eq!((a.balance, a.stream_version), (7, Some(v + 1)));
        bank.withdraw("a1", 7).unwrap();
        // Hard: the account is gone for good, its id can never be opened again.
        bank.store()
            .delete_stream(&s, ExpectedVersion::Any, true, None)
            .unwrap();
        gone(&bank, "a1", "hard-deleted");
        let e = err(bank.open_account("a1", 1, None), "after a hard delete");
        assert_eq!(e.kind, ErrorKind::StreamDeleted, "{e}");
        bank = reopen(bank, dir.path(), &opts, how);
        gone(&bank, "a1", "hard-deleted, reopened");
        let e = err(
            bank.open_account("a1", 1, None),
            "after a hard delete, reopened",
        );
        assert_eq!(e.kind, ErrorKind::StreamDeleted, "{e}");
        assert_eq!(bank.get("keep").unwrap().balance, 45);
        // Rebuilt from the log alone, the projection agrees.
        bank.store().close().unwrap();
        drop(bank);
        std::fs::remove_dir_all(dir.path().join("snapshots")).ok();
        let bank = open_bank(dir.path(), opts.clone());
        gone(&bank, "a1", "rebuilt from the log");
        assert_eq!(bank.get("keep").unwrap().balance, 45);
    }
}

#[test]
fn account_streams_are_never_truncated_nor_given_a_retention_rule() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_700_000_000_000_000);
    let bank = open_bank(dir.path(), options(FsyncPolicy::Os, &clock));
    bank.open_account("b1", 10, None).unwrap();
    bank.deposit("b1", 5).unwrap();
    let store = bank.store();
    let n = store.next_position().unwrap();
    let e = err(store.truncate_stream("account-b1", 1, None), "truncate");
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    let rule = Rule {
        max_count: 1,
        max_age_us: 0,
    };
    for (target, category) in [
        ("account-b1", false),
        ("account-", true),
        ("acc", true),
        ("", true),
        ("account-b", true),
    ] {
        let e = err(store.set_retention(target, category, rule, None), target);
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{target}: {e}");
    }
    assert_eq!(store.next_position().unwrap(), n, "nothing written");
    // Elsewhere rules are fine, and clearing one is always fine.
    store.set_retention("acb", true, rule, None).unwrap();
    store
        .set_retention("", true, Rule::default(), None)
        .unwrap();
    assert_eq!(bank.get("b1").unwrap().balance, 15);
}

#[test]
fn a_stale_account_delete_names_the_actual_version() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_700_000_000_000_000);
    let bank = open_bank(dir.path(), options(FsyncPolicy::Os, &clock));
    writers::a_stale_account_delete_names_the_actual_version(&bank);
}

#[test]
fn a_delete_racing_deposits_never_removes_an_account_with_money() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_700_000_000_000_000);
    let bank = Arc::new(open_bank(dir.path(), options(FsyncPolicy::Os, &clock)));
    let raced = writers::a_delete_racing_deposits_never_leaves_money_in_a_deleted_account(
        &bank, &bank, 100,
    );
    println!("deletes refused while the balance moved: {raced}");
}

// ---------------------------------------------------------------------------------------
// A read-only follower in another process
// ---------------------------------------------------------------------------------------

/// What the follower must see after step `step` of the writer (both sides know the
/// script): read_all's events, stream f-a's versions, f-b's state, f-c's, category t-.
fn follower_checks(store: &Arc<Store>, step: u64) {
    let live_counts = [18, 15, 12, 10, 4, 5];
    let all = drain_tail(store.read_all(0).unwrap());
    assert_eq!(
        all.len(),
        live_counts[step as usize],
        "step {step}: read_all"
    );
    let fa: Vec<u64> = drain(store.read_stream("f-a", 0).unwrap())
        .iter()
        .map(|e| e.stream_version)
        .collect();
    let want: Vec<u64> = if step >= 1 {
        vec![3, 4]
    } else {
        (0..5).collect()
    };
    assert_eq!(fa, want, "step {step}: f-a");
    if step >= 1 {
        let x = err(store.read_event(0), "f-a's first");
        assert!(x.message.contains("truncation"), "step {step}: {x}");
    }
    let fb = store.read_stream("f-b", 0).map(drain);
    match step {
        0 | 1 => assert_eq!(fb.unwrap().len(), 3, "step {step}: f-b"),
        2..=4 => {
            assert_eq!(err(fb, "f-b").kind, ErrorKind::NotFound, "step {step}");
            // Soft-deleted: no stream, for writers too, until appended to again.
            assert_eq!(store.stream_version("f-b").unwrap(), None);
        }
        _ => {
            let v: Vec<u64> = fb.unwrap().iter().map(|e| e.stream_version).collect();
            assert_eq!(v, vec![3], "step {step}: f-b continued");
        }
    }
    let fc = store.stream_version("f-c");
    if step >= 3 {
        assert_eq!(err(fc, "f-c").kind, ErrorKind::StreamDeleted, "step {step}");
    } else {
        assert_eq!(fc.unwrap(), Some(1));
    }
    let t = drain_tail(store.read_category("t-", 0).unwrap()).len();
    assert_eq!(t, if step >= 4 { 2 } else { 8 }, "step {step}: category t-");
    let listed = store.list_streams().unwrap().len();
    assert_eq!(
        listed,
        [5, 5, 4, 3, 3, 4][step as usize],
        "step {step}: list_streams"
    );
    if step >= 4 {
        let r = store.retention("t-9", false).unwrap();
        assert_eq!(r.map(|r| r.max_count), Some(1));
    }
}

const FOLLOWER_STEPS: u64 = 5;

/// The child: follows the store read-only, checking each step when told.
#[test]
#[ignore = "a child process of a_read_only_follower_in_another_process_sees_each_operation"]
fn follower_child() {
    assert_eq!(procs::role(), "follower");
    let dir = std::env::var("EVS_LIFE_DIR").unwrap();
    let opts = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(&dir, opts, Vec::new()).unwrap();
    let store = Arc::new(store);
    // A cursor opened before any operation reads slowly behind the writer: an event
    // removed before it reaches it never comes out.
    let removed = |e: &Event, step: u64| {
        let v = e.stream_version;
        (e.stream == "f-a" && v < 3 && step >= 1)
            || (e.stream == "f-b" && v < 3 && step >= 2)
            || (e.stream == "f-c" && step >= 3)
            || (e.stream.starts_with("t-") && v < 3 && step >= 4)
    };
    let mut tail = store.read_all(0).unwrap();
    let mut seen = 0;
    for step in 0..=FOLLOWER_STEPS {
        if step > 0 {
            procs::wait_for_parent();
        }
        follower_checks(&store, step);
        let last = step == FOLLOWER_STEPS;
        for _ in 0..if last { usize::MAX } else { 2 } {
            let Some(e) = tail.next().unwrap() else { break };
            let e = e.to_owned();
            assert!(
                !removed(&e, step),
                "step {step}: the tailing cursor returned the removed event at {}",
                e.position
            );
            seen += 1;
        }
        procs::report(&format!("ok {step} {seen}"));
    }
    // Two an earlier step (f-a 0-1, f-a 3-4, f-c 0-1, t-1 0-1, t-1 3 and t-2 3), then
    // f-b's new event.
    assert_eq!(seen, 11, "events the tail returned");
}

#[test]
fn a_read_only_follower_in_another_process_sees_each_operation_when_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        StoreOptions {
            fsync: FsyncPolicy::Batch(Duration::from_millis(2)),
            ..StoreOptions::default()
        },
    );
    let ev = [EventInput::new("T", b"e")];
    for (s, n) in [("f-a", 5), ("f-b", 3), ("f-c", 2), ("t-1", 4), ("t-2", 4)] {
        for _ in 0..n {
            store.append(s, ExpectedVersion::Any, &ev).unwrap();
        }
    }
    let mut kids = Children::new();
    {
        let _spawning = SPAWNING.write().unwrap_or_else(|e| e.into_inner());
        kids.spawn(
            "follower_child",
            "follower",
            &[("EVS_LIFE_DIR", dir.path().display().to_string())],
        );
    }
    let wait = |step: u64, kids: &mut Children| match kids.next_line() {
        Some((_, line)) => assert!(line.starts_with(&format!("ok {step} ")), "{line}"),
        None => panic!("the follower ended before step {step}"),
    };
    wait(0, &mut kids);
    for step in 1..=FOLLOWER_STEPS {
        match step {
            1 => {
                store.truncate_stream("f-a", 3, None).unwrap();
            }
            2 => {
                store
                    .delete_stream("f-b", ExpectedVersion::Exact(2), false, None)
                    .unwrap();
            }
            3 => {
                store
                    .delete_stream("f-c", ExpectedVersion::Any, true, None)
                    .unwrap();
            }
            4 => {
                let rule = Rule {
                    max_count: 1,
                    max_age_us: 0,
                };
                store.set_retention("t-", true, rule, None).unwrap();
            }
            _ => {
                store.append("f-b", ExpectedVersion::NoStream, &ev).unwrap();
            }
        }
        // Told only after the call returned: the follower must see it at once.
        kids.go(0);
        wait(step, &mut kids);
    }
    kids.wait_all();
}

#[test]
fn appends_racing_a_hard_delete_under_always_are_never_acknowledged_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(1_700_000_000_000_000);
    let store = open(dir.path(), options(FsyncPolicy::Always, &clock));
    let mut late = Vec::new();
    for round in 0..20 {
        let stream = format!("hot-{round}");
        store
            .append(&stream, ExpectedVersion::Any, &[EventInput::new("T", b"0")])
            .unwrap();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (store, stream) = (store.clone(), stream.clone());
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    loop {
                        match store.append(
                            &stream,
                            ExpectedVersion::Any,
                            &[EventInput::new("T", b"x")],
                        ) {
                            Ok(r) => acked.push(r.first_position),
                            Err(e) => {
                                assert_eq!(e.kind, ErrorKind::StreamDeleted, "{e}");
                                return acked;
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2));
        let at = store
            .delete_stream(&stream, ExpectedVersion::Any, true, None)
            .unwrap();
        for w in writers {
            late.extend(w.join().unwrap().into_iter().filter(|&p| p > at));
        }
    }
    assert!(
        late.is_empty(),
        "appends acknowledged after the hard delete: {late:?}"
    );
}
