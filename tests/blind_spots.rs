//! Tests for the bugs a mutation run planted that the suite did not notice (issue 11,
//! "the suite's blind spots"): each checks the data a user would get.

use evstore::account::Bank;
use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::{FsyncPolicy, RecordRef};
use std::path::Path;
use std::sync::Arc;

fn opts() -> StoreOptions {
    StoreOptions {
        fsync: FsyncPolicy::Always,
        preallocate: false,
        ..StoreOptions::default()
    }
}

/// A log in the reference program's format: one record an event, JSON envelopes, no
/// streams, whole-second timestamps.
fn write_legacy_log(dir: &Path, events: &[(&str, u64, &[u8])]) {
    let events_dir = dir.join("events");
    std::fs::create_dir_all(&events_dir).unwrap();
    let mut seg = Vec::new();
    for (id, &(ty, secs, payload)) in events.iter().enumerate() {
        let bytes: Vec<String> = payload.iter().map(|b| b.to_string()).collect();
        let value = format!(
            r#"{{"event_id":{id},"event_type":"{ty}","timestamp":{secs},"payload":[{}]}}"#,
            bytes.join(",")
        );
        RecordRef::put(&(id as u64).to_le_bytes(), value.as_bytes()).encode_into(&mut seg);
    }
    std::fs::write(events_dir.join("000000.wal"), seg).unwrap();
}

/// Mutant (b): the snapshot's CRC check removed. A byte changed inside a snapshot's body
/// (its CRC not recomputed, as damage would leave it) must make the snapshot ignored,
/// never trusted: here the change renames a stream in the snapshot's index.
#[test]
fn a_snapshot_with_a_changed_byte_is_ignored_and_the_state_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), opts(), Vec::new()).unwrap();
        for i in 0..20u8 {
            let stream = if i % 2 == 0 { "orders-qq" } else { "other" };
            store
                .append(stream, ExpectedVersion::Any, &[EventInput::new("T", &[i])])
                .unwrap();
        }
        store.snapshot().unwrap();
        store.close().unwrap();
    }
    let snap = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("a snapshot file");
    let mut bytes = std::fs::read(&snap).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"orders-qq")
        .expect("the stream name is in the snapshot");
    bytes[at + 8] = b'x'; // "orders-qx": same length, the structure still decodes
    std::fs::write(&snap, &bytes).unwrap();

    let (store, report) = Store::open(dir.path(), opts(), Vec::new()).unwrap();
    assert_eq!(report.snapshot_position, None, "{report:?}");
    assert!(!report.snapshot_ignored.is_empty());
    assert_eq!(store.stream_version("orders-qq").unwrap(), Some(9));
    assert_eq!(store.stream_version("orders-qx").unwrap(), None);
    let store = Arc::new(store);
    let mut c = store.read_stream("orders-qq", 0).unwrap();
    let mut n = 0u8;
    while let Some(e) = c.next().unwrap() {
        assert_eq!(e.payload, [n * 2]);
        n += 1;
    }
    assert_eq!(n, 10);
}

/// Mutant (c): timestamps allowed to decrease after an event with a future timestamp
/// (an old-format log written by a machine whose clock was ahead).
#[test]
fn appends_after_an_event_from_the_future_never_get_an_earlier_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let future_secs = 4_000_000_000u64; // the year 2096
    write_legacy_log(dir.path(), &[("Noted", future_secs, b"from the future")]);
    for round in 0..2 {
        let (store, _) = Store::open(dir.path(), opts(), Vec::new()).unwrap();
        let store = Arc::new(store);
        store
            .append("s", ExpectedVersion::Any, &[EventInput::new("T", b"now")])
            .unwrap();
        let mut c = store.read_all(0).unwrap();
        let mut last = 0;
        let mut n = 0;
        while let Some(e) = c.next().unwrap() {
            assert!(
                e.timestamp_us >= last,
                "round {round}: position {} has {} after {last}",
                e.position,
                e.timestamp_us
            );
            last = e.timestamp_us;
            n += 1;
        }
        assert_eq!(n, round + 2);
        assert!(last >= future_secs * 1_000_000);
    }
}

/// Mutant (d): transfers into and out of an old-format account, which has no stream of
/// its own (only deposits exercised that before).
#[test]
fn transfers_between_old_format_accounts_move_money_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    write_legacy_log(
        dir.path(),
        &[
            (
                "AccountOpened",
                1_700_000_000,
                br#"{"AccountOpened":{"account_id":"alice","initial_balance":1000}}"#,
            ),
            (
                "AccountOpened",
                1_700_000_001,
                br#"{"AccountOpened":{"account_id":"bob","initial_balance":50}}"#,
            ),
        ],
    );
    {
        let (bank, _) = Bank::open(dir.path(), opts()).unwrap();
        bank.transfer("alice", "bob", 300).unwrap();
        bank.transfer("bob", "alice", 100).unwrap();
        // And a new-format account on the other side.
        bank.open_account("carol", 10, None).unwrap();
        bank.transfer("alice", "carol", 5).unwrap();
        bank.transfer("carol", "bob", 15).unwrap();
        assert_eq!(bank.get("alice").unwrap().balance, 795);
        assert_eq!(bank.get("bob").unwrap().balance, 265);
        assert_eq!(bank.get("carol").unwrap().balance, 0);
        let e = bank.transfer("bob", "alice", 266).unwrap_err();
        assert_eq!(
            e.kind,
            evstore::ErrorKind::InsufficientFunds,
            "{}",
            e.message
        );
        bank.store().close().unwrap();
    }
    let (bank, _) = Bank::open(dir.path(), opts()).unwrap();
    assert_eq!(bank.get("alice").unwrap().balance, 795);
    assert_eq!(bank.get("bob").unwrap().balance, 265);
    assert_eq!(bank.get("carol").unwrap().balance, 0);
}

/// Issue 19, item 6: the dedupe window's restore from a snapshot and its sweep were
/// covered only by unit tests. With a window of 500 events: 2,100 events with ids (so the
/// window is swept several times), a snapshot, 404 more, a reopen (the window restored
/// from the snapshot, then the log's tail replayed into it). Retried batches from before
/// the snapshot, after it, and the one at the window's edge (the oldest position whose id
/// is promised to be found) each return their first attempt's result and write nothing;
/// the window holds a bounded number of ids. 2,504 events in all: a sweep (once the ids
/// span two windows) comes with the very last event, so the edge is where the sweep cut.
/// Then 500 more, each batch followed by a retry at the edge.
#[test]
fn retries_on_both_sides_of_a_snapshot_and_at_the_window_edge_write_nothing_after_a_reopen() {
    const WINDOW: u64 = 500;
    const BATCH: u64 = 4;
    const TOTAL: u64 = 2504;
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        dedupe_window: WINDOW,
        max_segment_size: 64 << 10,
        ..opts()
    };
    let id = |position: u64| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(
            &(position + 1)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .to_le_bytes(),
        );
        b[8..].copy_from_slice(&(position + 1).to_le_bytes());
        b
    };
    let payload = |position: u64| format!("event {position}").into_bytes();
    let stream = |first: u64| format!("s{}", (first / BATCH) % 7);
    // The batch whose first event is at `first`, as its first attempt sent it, expecting
    // `expected` of its stream.
    let append_expecting = |store: &Store, first: u64, expected: ExpectedVersion| {
        let payloads: Vec<Vec<u8>> = (first..first + BATCH).map(payload).collect();
        let inputs: Vec<EventInput<'_>> = payloads
            .iter()
            .zip(first..)
            .map(|(p, pos)| EventInput {
                id: Some(id(pos)),
                subject: None,
                ..EventInput::new("T", p)
            })
            .collect();
        store.append(&stream(first), expected, &inputs)
    };
    let append = |store: &Store, first: u64| append_expecting(store, first, ExpectedVersion::Any);
    let mut results = std::collections::HashMap::new();
    {
        let (store, _) = Store::open(dir.path(), options.clone(), Vec::new()).unwrap();
        for first in (0..TOTAL).step_by(BATCH as usize) {
            if first == 2100 {
                assert_eq!(store.snapshot().unwrap(), 2100);
            }
            let r = append(&store, first).unwrap();
            assert_eq!(r.first_position, first);
            results.insert(first, r.stream_versions);
        }
        store.close().unwrap();
    }
    let (store, report) = Store::open(dir.path(), options, Vec::new()).unwrap();
    assert_eq!(report.snapshot_position, Some(2100), "{report:?}");
    let next = store.next_position().unwrap();
    assert_eq!(next, TOTAL);
    let edge = next - WINDOW;
    for first in [edge, 2052, 2096, 2100, 2200, TOTAL - BATCH] {
        let r = append(&store, first).unwrap_or_else(|e| panic!("retry of {first}: {e}"));
        assert_eq!(r.first_position, first, "retry of the batch at {first}");
        assert_eq!(
            r.stream_versions, results[&first],
            "retry of the batch at {first}"
        );
        assert_eq!(
            store.next_position().unwrap(),
            next,
            "the retry at {first} wrote"
        );
    }
    // A retry with the expected version its first attempt had (the stream moved on since)
    // is still the same append.
    let first = 2096;
    let before = results[&first][0] - BATCH;
    let r = append_expecting(&store, first, ExpectedVersion::Exact(before)).unwrap();
    assert_eq!(r.first_position, first);
    assert_eq!(store.next_position().unwrap(), next);
    // 500 events more on the restored window (it is swept again), each batch followed by
    // a retry of the batch at the window's edge, wherever the sweeps fall.
    let mut next = next;
    for first in (TOTAL..TOTAL + WINDOW).step_by(BATCH as usize) {
        let r = append(&store, first).unwrap();
        assert_eq!(r.first_position, first);
        results.insert(first, r.stream_versions);
        next += BATCH;
        let edge = next - WINDOW;
        let r = append(&store, edge).unwrap_or_else(|e| panic!("retry of {edge}: {e}"));
        assert_eq!(
            (r.first_position, &r.stream_versions),
            (edge, &results[&edge])
        );
        assert_eq!(
            store.next_position().unwrap(),
            next,
            "the retry at {edge} wrote"
        );
    }
    // Nothing was written twice, and the window keeps a bounded number of ids.
    let store = Arc::new(store);
    let mut c = store.read_all(0).unwrap();
    let mut p = 0;
    while let Some(e) = c.next().unwrap() {
        assert_eq!(e.payload, payload(p).as_slice());
        p += 1;
    }
    assert_eq!(p, next);
    let ids = store.stats().unwrap().event_ids;
    assert!(
        (WINDOW..=2 * WINDOW + BATCH).contains(&ids),
        "{ids} ids remembered"
    );
}
