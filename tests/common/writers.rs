//! What writers see after lifecycle operations, the same on both engines
//! (docs/lifecycle.md): a soft-deleted stream is no stream until it is appended to again,
//! a truncation changes only readers' view, the order of a stream operation's checks, a
//! rule's change (or a clock set back) never brings an event back, and a deposit racing
//! an account's delete never leaves money in it. tests/lifecycle.rs runs these on the
//! file engine, tests/pg_lifecycle.rs on PostgreSQL.
//!
//! Each scenario takes `open`, which gives a handle on the same store each time it is
//! called (a reopen on files, of a kind the caller chooses; another handle on PostgreSQL).

use super::life::err;
use evstore::account::{stream_name, Bank};
use evstore::store::lifecycle::{LifecycleRequest, Rule};
use evstore::store::{Clock, EventInput, ExpectedVersion, Store, StreamAppend};
use evstore::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Gives a handle on the scenario's store.
pub type Open<'a> = &'a mut dyn FnMut() -> Arc<Store>;

/// A clock the test moves: microseconds since the epoch.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    pub fn new(start: u64) -> TestClock {
        TestClock(Arc::new(AtomicU64::new(start)))
    }
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::new(move || t.load(Ordering::SeqCst))
    }
}

fn ev(payload: &[u8]) -> [EventInput<'_>; 1] {
    [EventInput::new("T", payload)]
}

/// The versions and payloads a stream read gives (`Err`: the read's status).
fn versions(s: &Store, stream: &str) -> Result<Vec<(u64, Vec<u8>)>, ErrorKind> {
    let mut c = s.read_stream(stream, 0).map_err(|e| e.kind)?;
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push((e.stream_version, e.payload.to_vec()));
    }
    Ok(out)
}

fn kind<T: std::fmt::Debug>(r: evstore::Result<T>, what: &str) -> ErrorKind {
    err(r, what).kind
}

/// A wrong expected version, with `actual` in its detail.
fn wrong<T: std::fmt::Debug>(r: evstore::Result<T>, actual: Option<u64>, what: &str) {
    let e = err(r, what);
    assert_eq!(e.kind, ErrorKind::WrongExpectedVersion, "{what}: {e:?}");
    assert_eq!(e.detail().actual_version, Some(actual), "{what}: {e:?}");
}

/// What every writer sees of stream `s`, soft-deleted at version `kept` and not appended
/// to since: no stream. Nothing it refuses writes anything.
fn no_stream_for_writers(st: &Store, s: &str, kept: u64, when: &str) {
    use ExpectedVersion::{Any, Exact, Exists};
    let n = st.next_position().unwrap();
    assert_eq!(
        st.stream_version(s).unwrap(),
        None,
        "{when}: stream_version"
    );
    assert_eq!(versions(st, s), Err(ErrorKind::NotFound), "{when}: read");
    wrong(st.append(s, Exact(kept), &ev(b"x")), None, when);
    wrong(st.append(s, Exists, &ev(b"x")), None, when);
    for expected in [Any, Exists, Exact(kept)] {
        let e = err(st.delete_stream(s, expected, false, None), when);
        assert_eq!(
            e.kind,
            ErrorKind::NotFound,
            "{when}: soft delete again: {e:?}"
        );
    }
    let e = err(st.truncate_stream(s, 0, None), when);
    assert_eq!(e.kind, ErrorKind::NotFound, "{when}: truncate: {e:?}");
    wrong(st.delete_stream(s, Exists, true, None), None, when);
    wrong(st.delete_stream(s, Exact(kept), true, None), None, when);
    // In a multi-stream append too, and nothing of it is written.
    let parts = [
        StreamAppend {
            stream: "other",
            expected: Any,
            events: &ev(b"o"),
        },
        StreamAppend {
            stream: s,
            expected: Exact(kept),
            events: &ev(b"x"),
        },
    ];
    let e = err(st.append_multi(&parts), when);
    assert_eq!(e.kind, ErrorKind::WrongExpectedVersion, "{when}: {e:?}");
    assert_eq!(
        (e.detail().actual_version, e.detail().part_index),
        (Some(None), Some(1)),
        "{when}: {e:?}"
    );
    assert_eq!(st.next_position().unwrap(), n, "{when}: nothing written");
}

/// A soft-deleted stream does not exist, for writers too, until it is appended to again;
/// its versions then continue after the kept one (NO_STREAM and ANY alike); a hard delete
/// (ANY) tombstones it.
pub fn a_soft_deleted_stream_is_no_stream_until_appended_to_again(open: Open<'_>) {
    use ExpectedVersion::{Any, Exact, NoStream};
    let st = open();
    st.append("s", NoStream, &ev(b"a")).unwrap();
    st.append("s", Any, &ev(b"b")).unwrap();
    for name in ["u", "h", "m"] {
        st.append(name, Any, &ev(b"1")).unwrap();
        st.append(name, Any, &ev(b"2")).unwrap();
    }
    for name in ["s", "u", "h", "m"] {
        st.delete_stream(name, Exact(1), false, None).unwrap();
    }
    no_stream_for_writers(&st, "s", 1, "soft-deleted");
    drop(st);
    let st = open();
    no_stream_for_writers(&st, "s", 1, "soft-deleted, another handle");
    // NO_STREAM continues the versions; so does ANY.
    let r = st.append("s", NoStream, &ev(b"c")).unwrap();
    assert_eq!(r.stream_versions, vec![2]);
    let c_at = r.first_position;
    let r = st.append("u", Any, &ev(b"3")).unwrap();
    assert_eq!(r.stream_versions, vec![2]);
    // Within one append: the first part finds no stream, the second the version the
    // first made.
    let parts = [
        StreamAppend {
            stream: "m",
            expected: NoStream,
            events: &ev(b"3"),
        },
        StreamAppend {
            stream: "m",
            expected: Exact(2),
            events: &ev(b"4"),
        },
    ];
    assert_eq!(st.append_multi(&parts).unwrap().stream_versions, vec![2, 3]);
    // A hard delete of a soft-deleted stream, with ANY, tombstones it.
    st.delete_stream("h", Any, true, None).unwrap();
    drop(st);
    let st = open();
    assert_eq!(st.stream_version("s").unwrap(), Some(2));
    assert_eq!(versions(&st, "s").unwrap(), vec![(2, b"c".to_vec())]);
    assert_eq!(versions(&st, "u").unwrap(), vec![(2, b"3".to_vec())]);
    let m: Vec<u64> = versions(&st, "m").unwrap().iter().map(|e| e.0).collect();
    assert_eq!(m, vec![2, 3]);
    let listed = st.list_streams().unwrap();
    let s = listed.iter().find(|i| i.name == "s").unwrap();
    assert_eq!((s.version, s.first_position), (2, c_at));
    assert!(listed.iter().all(|i| i.name != "h"));
    assert_eq!(kind(st.stream_version("h"), "h"), ErrorKind::StreamDeleted);
    assert_eq!(
        kind(st.append("h", NoStream, &ev(b"x")), "h"),
        ErrorKind::StreamDeleted
    );
    // It exists again: a soft delete expecting its new version works.
    st.delete_stream("s", Exact(2), false, None).unwrap();
    no_stream_for_writers(&st, "s", 2, "soft-deleted twice");
}

/// What writers see of stream `t` (3 events) truncated to its end: it exists at
/// version 2.
fn truncated_for_writers(st: &Store, when: &str) {
    use ExpectedVersion::{Exact, NoStream};
    assert_eq!(versions(st, "t"), Err(ErrorKind::NotFound), "{when}: read");
    assert_eq!(st.stream_version("t").unwrap(), Some(2), "{when}");
    wrong(st.append("t", NoStream, &ev(b"x")), Some(2), when);
    wrong(st.append("t", Exact(1), &ev(b"x")), Some(2), when);
    // Its operations see it too.
    let truncate = |expected| LifecycleRequest::Truncate {
        stream: "t",
        expected,
        before_version: 2,
    };
    wrong(st.lifecycle(truncate(Exact(1)), None), Some(2), when);
    st.lifecycle(truncate(Exact(2)), None).unwrap();
}

/// A truncation (even to the stream's end) changes what readers see, not what writers
/// see: the stream keeps existing at its version.
pub fn a_truncation_changes_only_what_readers_see(open: Open<'_>) {
    use ExpectedVersion::{Exact, Exists};
    let st = open();
    for p in [b"0", b"1", b"2"] {
        st.append("t", ExpectedVersion::Any, &ev(p)).unwrap();
    }
    st.truncate_stream("t", 3, None).unwrap();
    truncated_for_writers(&st, "truncated");
    drop(st);
    let st = open();
    truncated_for_writers(&st, "truncated, another handle");
    assert_eq!(
        st.append("t", Exists, &ev(b"3")).unwrap().stream_versions,
        vec![3]
    );
    assert_eq!(
        st.append("t", Exact(3), &ev(b"4")).unwrap().stream_versions,
        vec![4]
    );
    drop(st);
    let st = open();
    let v: Vec<u64> = versions(&st, "t").unwrap().iter().map(|e| e.0).collect();
    assert_eq!(v, vec![3, 4]);
}

/// A stream operation is checked in this order: a tombstone, no such stream, the
/// expected version, then the operation's own bounds.
pub fn a_stream_operation_checks_tombstone_then_existence_then_version_then_bounds(open: Open<'_>) {
    use ExpectedVersion::{Any, Exact};
    let st = open();
    for p in [b"0", b"1", b"2"] {
        st.append("o", Any, &ev(p)).unwrap();
    }
    st.append("d", Any, &ev(b"0")).unwrap();
    st.delete_stream("d", Any, true, None).unwrap();
    let n = st.next_position().unwrap();
    let truncate = |stream, expected, before_version| LifecycleRequest::Truncate {
        stream,
        expected,
        before_version,
    };
    // Out of bounds and a wrong version: the version.
    wrong(
        st.lifecycle(truncate("o", Exact(0), 99), None),
        Some(2),
        "o",
    );
    let e = err(st.lifecycle(truncate("o", Exact(2), 99), None), "bounds");
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e:?}");
    // No such stream and a wrong version: not found.
    for hard in [false, true] {
        let e = err(st.delete_stream("never", Exact(5), hard, None), "never");
        assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    }
    let e = err(st.lifecycle(truncate("never", Exact(5), 99), None), "never");
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    // A tombstone before everything.
    for hard in [false, true] {
        let e = err(st.delete_stream("d", Exact(5), hard, None), "tombstone");
        assert_eq!(e.kind, ErrorKind::StreamDeleted, "{e:?}");
    }
    let e = err(st.lifecycle(truncate("d", Exact(5), 99), None), "tombstone");
    assert_eq!(e.kind, ErrorKind::StreamDeleted, "{e:?}");
    assert_eq!(st.next_position().unwrap(), n, "nothing written");
}

/// The versions of a stream's events left.
fn left(st: &Store, stream: &str) -> Vec<u64> {
    versions(st, stream)
        .unwrap_or_default()
        .iter()
        .map(|e| e.0)
        .collect()
}

fn count(n: u64) -> Rule {
    Rule {
        max_count: n,
        max_age_us: 0,
    }
}

/// What the rule scenario left, on any handle.
fn rules_kept(st: &Store, when: &str) {
    assert_eq!(left(st, "r-1"), vec![3], "{when}: r-1");
    assert_eq!(left(st, "q-1"), vec![2, 3], "{when}: q-1");
    assert_eq!(left(st, "w"), vec![4, 5], "{when}: w");
    let all: Vec<u64> = {
        let mut c = st.read_all(0).unwrap();
        std::iter::from_fn(|| c.next().unwrap().map(|e| e.stream_version)).collect()
    };
    assert_eq!(all, vec![3, 2, 3, 4, 5], "{when}: read_all");
    assert_eq!(st.stats().unwrap().removed_events, 3 + 2 + 4, "{when}");
}

/// Changing or clearing a retention rule (on a stream or a prefix) keeps removed what
/// the rule before removed: a 1-count rule, cleared; a prefix's, cleared; a stream's made
/// looser. `open` is called three times after the changes.
pub fn a_rule_changed_or_cleared_brings_no_event_back(open: Open<'_>) {
    let st = open();
    for name in ["r-1", "q-1"] {
        for p in [b"0", b"1", b"2", b"3"] {
            st.append(name, ExpectedVersion::Any, &ev(p)).unwrap();
        }
    }
    for p in [b"0", b"1", b"2", b"3", b"4"] {
        st.append("w", ExpectedVersion::Any, &ev(p)).unwrap();
    }
    st.set_retention("r-1", false, count(1), None).unwrap();
    assert_eq!(left(&st, "r-1"), vec![3]);
    st.set_retention("r-1", false, Rule::default(), None)
        .unwrap();
    assert_eq!(left(&st, "r-1"), vec![3], "cleared");
    st.set_retention("q-", true, count(2), None).unwrap();
    st.set_retention("q-", true, Rule::default(), None).unwrap();
    st.set_retention("w", false, count(1), None).unwrap();
    st.set_retention("w", false, count(3), None).unwrap();
    assert_eq!(left(&st, "w"), vec![4], "looser");
    // The looser rule keeps the last 3 from here on; what was removed stays so.
    st.append("w", ExpectedVersion::Any, &ev(b"5")).unwrap();
    rules_kept(&st, "changed");
    drop(st);
    for round in 1..=3 {
        let st = open();
        rules_kept(&st, &format!("handle {round}"));
    }
}

/// Rules by age: a clock set back brings nothing back within a handle, and a rule
/// cleared keeps removed what it removed when it was cleared. Events are stamped by the
/// engine (on PostgreSQL by the server), so times are taken from the events themselves.
pub fn a_rule_by_age_cleared_or_a_clock_set_back_brings_no_event_back(
    open: Open<'_>,
    clock: &TestClock,
) {
    const AGE: u64 = 1_000_000;
    let st = open();
    st.append("age-1", ExpectedVersion::Any, &ev(b"old"))
        .unwrap();
    let ts = |st: &Store, p: u64| st.read_event(p).unwrap().timestamp_us;
    let t0 = ts(&st, 0);
    // On files the event's time is the test's clock: the next one 1 s later.
    clock.set(t0 + AGE);
    st.append("age-1", ExpectedVersion::Any, &ev(b"new"))
        .unwrap();
    let t1 = ts(&st, 1);
    assert!(t1 >= t0 + 4, "{t1} after {t0}");
    let mid = t0 + (t1 - t0) / 2;
    let rule = Rule {
        max_count: 0,
        max_age_us: AGE,
    };
    st.set_retention("age-", true, rule, None).unwrap();
    // The first event's age passes, the second's does not.
    clock.set(mid + AGE);
    assert_eq!(left(&st, "age-1"), vec![1]);
    clock.set(t0);
    assert_eq!(left(&st, "age-1"), vec![1], "the clock set back");
    clock.set(mid + AGE + 1);
    st.set_retention("age-", true, Rule::default(), None)
        .unwrap();
    assert_eq!(left(&st, "age-1"), vec![1], "the rule cleared");
    drop(st);
    // Another handle, the clock far back and no rule: still removed.
    clock.set(t0 - 60 * AGE);
    let st = open();
    assert_eq!(left(&st, "age-1"), vec![1], "another handle");
    assert_eq!(st.stats().unwrap().removed_events, 1);
}

/// Deposits and withdrawals on `mover` race deletes of the account's stream through
/// `deleter` (the same bank, or another handle of the same store): a delete happens only
/// at a zero balance, and no event of the account is acknowledged after it. Returns how
/// often a delete was refused (the balance moved, or a deposit came first).
pub fn a_delete_racing_deposits_never_leaves_money_in_a_deleted_account(
    mover: &Arc<Bank>,
    deleter: &Arc<Bank>,
    rounds: usize,
) -> u64 {
    let mut raced = 0;
    for round in 0..rounds {
        let id = format!("r{round}");
        mover.open_account(&id, 0, None).unwrap();
        let done = Arc::new(AtomicU64::new(0));
        // One thread moves the balance between 0 and 1 until the account is gone; it
        // records the position of each of its events with the balance after it. An
        // operation checked before the delete and appended after it fails its expected
        // version (the stream is no stream then); the next one finds no account.
        let thread = {
            let (bank, done, id) = (mover.clone(), done.clone(), id.clone());
            std::thread::spawn(move || {
                let mut log = Vec::new();
                loop {
                    let deposit = log.len() % 2 == 0;
                    let r = if deposit {
                        bank.deposit(&id, 1)
                    } else {
                        bank.withdraw(&id, 1)
                    };
                    match r {
                        Ok(p) => log.push((p, deposit as i64)),
                        Err(e) if e.kind == ErrorKind::WrongExpectedVersion => {}
                        Err(e) => {
                            assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
                            return log;
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        while done.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        let stream = stream_name(&id);
        let deleted_at = loop {
            match deleter.delete_stream(&stream, ExpectedVersion::Any, false, None) {
                Ok(p) => break p,
                Err(e) => {
                    raced += 1;
                    assert!(
                        matches!(
                            e.kind,
                            ErrorKind::BalanceNotZero | ErrorKind::WrongExpectedVersion
                        ),
                        "{e}"
                    )
                }
            }
        };
        let log = thread.join().unwrap();
        // The balance just before the delete's position was zero, and no event of the
        // account came after it (it would be money in an account that is gone).
        let before = log
            .iter()
            .rfind(|(p, _)| *p < deleted_at)
            .map_or(0, |l| l.1);
        assert_eq!(before, 0, "{id}: deleted at {deleted_at} with money in it");
        assert!(
            log.iter().all(|(p, _)| *p < deleted_at),
            "{id}: an event acknowledged after the delete at {deleted_at}: {log:?}"
        );
        for bank in [mover, deleter] {
            assert_eq!(err(bank.get(&id), "gone").kind, ErrorKind::NotFound);
        }
    }
    raced
}

/// A delete of an account's stream expecting a version the account has moved past is
/// refused by the account domain's guard with the actual version in the detail.
pub fn a_stale_account_delete_names_the_actual_version(bank: &Bank) {
    bank.open_account("g", 0, None).unwrap();
    bank.deposit("g", 1).unwrap();
    bank.withdraw("g", 1).unwrap();
    let stream = stream_name("g");
    wrong(
        bank.delete_stream(&stream, ExpectedVersion::Exact(1), false, None),
        Some(2),
        "stale",
    );
    bank.delete_stream(&stream, ExpectedVersion::Exact(2), false, None)
        .unwrap();
}
