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
