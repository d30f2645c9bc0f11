//! Replay after a crash (issue 25: an open that replays 1,000,000 events in < 100 ms)
//! must rebuild what the appends built and stop at damage as it did. The usual envelope
//! is decoded in one pass that only says whether it decodes (damage is then judged field
//! by field, for its message); the id index is told of the events without an id only
//! before it is used otherwise (an event with an id, a lifecycle entry) and at the end of
//! the replay, not once an event. These tests compare a store that replayed its log with
//! one that never closed, through what the id window answers, and the errors of damage.

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use std::path::Path;

/// A small window, so that where it starts decides which old ids are still found.
const WINDOW: u64 = 2;

fn options() -> StoreOptions {
    StoreOptions {
        dedupe_window: WINDOW,
        ..StoreOptions::default()
    }
}

fn id(n: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    b[8..].copy_from_slice(&(n + 1).to_le_bytes());
    b
}

/// What the log gets: an event without an id, one with the id numbered so, or a
/// lifecycle entry (a truncation of the stream) with the id numbered so.
#[derive(Clone, Copy)]
enum Op {
    Plain,
    Id(u64),
    Entry(u64),
}

fn apply(store: &Store, op: Op) {
    match op {
        Op::Plain => _ = append(store, None),
        Op::Id(n) => _ = append(store, Some(n)),
        Op::Entry(n) => _ = store.truncate_stream("s", 1, Some(id(n))).unwrap(),
    }
}

/// Appends one event, with the id numbered `with_id` if any.
fn append(store: &Store, with_id: Option<u64>) -> u64 {
    let payload = format!("{with_id:?}").into_bytes();
    let input = EventInput {
        id: with_id.map(id),
        ..EventInput::new("T", &payload)
    };
    store
        .append("s", ExpectedVersion::Any, &[input])
        .unwrap()
        .first_position
}

/// Removes the checkpoint a close may have taken: the next open replays the whole log.
fn drop_checkpoint(dir: &Path) {
    match std::fs::remove_dir_all(dir.join("snapshots")) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        r => r.unwrap(),
    }
}

/// Closes the store, removes its checkpoint and opens it again: the open replays the
/// whole log.
fn replayed(store: Store, dir: &Path) -> Store {
    let events = store.next_position().unwrap();
    store.close().unwrap();
    drop_checkpoint(dir);
    let (store, report) = Store::open(dir, options(), Vec::new()).unwrap();
    assert_eq!(report.snapshot_position, None);
    assert_eq!(report.events_replayed, events);
    store
}

/// Applies `before`, replays the log if `reopen`, applies `after`, then retries the
/// append of every event id in turn: what each retry returned (the first attempt's
/// position when the window still held its id, a new position otherwise) and the next
/// position after it.
fn retries(before: &[Op], reopen: bool, after: &[Op]) -> Vec<(u64, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), options(), Vec::new()).unwrap();
    for &op in before {
        apply(&store, op);
    }
    if reopen {
        store = replayed(store, dir.path());
    }
    for &op in after {
        apply(&store, op);
    }
    let ids = before.iter().chain(after).filter_map(|&op| match op {
        Op::Id(n) => Some(n),
        _ => None,
    });
    let out = ids
        .map(|n| (append(&store, Some(n)), store.next_position().unwrap()))
        .collect();
    store.close().unwrap();
    out
}

/// Ten events without an id, then four with one (the first of them is where the window
/// begins): replayed, the window is where the appends left it.
#[test]
fn ids_after_events_without_one_replay_to_the_same_window() {
    let mut log = vec![Op::Plain; 10];
    log.extend((0..4).map(Op::Id));
    assert_eq!(retries(&log, true, &[]), retries(&log, false, &[]));
}

/// The log ends with events without an id: the appends after the replay count them.
#[test]
fn events_without_an_id_at_the_end_of_the_log_count_after_the_replay() {
    let before = vec![Op::Plain; 10];
    let after: Vec<Op> = (0..4).map(Op::Id).collect();
    assert_eq!(
        retries(&before, true, &after),
        retries(&before, false, &after)
    );
}

/// Events without an id, then a lifecycle entry with one (the window begins there), then
/// events with ids.
#[test]
fn an_entry_with_an_id_after_events_without_one_replays_to_the_same_window() {
    let mut log = vec![Op::Plain; 10];
    log.push(Op::Entry(100));
    log.extend((0..4).map(Op::Id));
    assert_eq!(retries(&log, true, &[]), retries(&log, false, &[]));
}

/// A change to a record's key and value.
type Change = dyn Fn(&mut Vec<u8>, &mut Vec<u8>);

/// A store of six events in one stream (positions 0 to 5), closed, without its
/// checkpoint; then the record of position 3 rewritten by `change` (its key and value)
/// with a correct CRC, so that only what the record holds is wrong. Returns the error of
/// the open and the segment offset of that record.
fn open_with_record_3(change: &Change) -> (evstore::Error, usize) {
    use evstore::wal::record::{self, RecordRef};
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), options(), Vec::new()).unwrap();
        for _ in 0..6 {
            append(&store, None);
        }
        store.close().unwrap();
    }
    drop_checkpoint(dir.path());
    let segment = dir.path().join("events").join("000000.wal");
    let bytes = std::fs::read(&segment).unwrap();
    let (mut out, mut at, mut offset_3) = (Vec::new(), 0, None);
    for n in 0..6 {
        let d = record::decode(&bytes[at..]).unwrap();
        let (mut key, mut value) = (d.record.key.to_vec(), d.record.value.to_vec());
        if n == 3 {
            change(&mut key, &mut value);
            offset_3 = Some(out.len());
        }
        RecordRef {
            key: &key,
            value: &value,
            ..d.record
        }
        .encode_into(&mut out);
        at += d.len;
    }
    out.resize(bytes.len().max(out.len()), 0);
    std::fs::write(&segment, &out).unwrap();
    let err = match Store::open(dir.path(), options(), Vec::new()) {
        Ok(_) => panic!("the store opened with a damaged record"),
        Err(e) => e,
    };
    (err, offset_3.unwrap())
}

/// Damage that the record's CRC does not catch (what it holds is wrong, not torn) stops
/// the replay with the message of the field that is wrong, at the record's place: the
/// one-pass decode replay uses for the usual envelope leaves the judging to the
/// field-by-field one.
#[test]
fn a_record_whose_envelope_is_wrong_stops_the_replay_naming_what_is_wrong() {
    let cases: [(&str, Box<Change>); 5] = [
        (
            "envelope: the stream runs past the record",
            Box::new(|_, v| *v = vec![0x01, 5, 0x7f, b's']),
        ),
        (
            "envelope: the event type is not UTF-8",
            Box::new(|_, v| *v = vec![0x01, 5, 1, b's', 3, 2, 0xff, 0xfe, 1, 0]),
        ),
        (
            "envelope: the metadata runs past the record",
            Box::new(|_, v| *v = vec![0x01, 5, 1, b's', 3, 1, b'T', 1, 9, b'x']),
        ),
        (
            "unknown envelope format byte 0x09",
            Box::new(|_, v| v[0] = 0x09),
        ),
        (
            "the record at position 3 has the key of position 1",
            Box::new(|k, _| *k = 1u64.to_le_bytes().to_vec()),
        ),
    ];
    for (want, change) in cases {
        let (err, offset) = open_with_record_3(&*change);
        assert_eq!(err.kind, evstore::ErrorKind::Corrupt, "{want}: {err}");
        let at = format!("000000.wal offset {offset}: ");
        assert!(
            err.message.contains(&at) && err.message.contains(want),
            "want {at:?} and {want:?}, got {:?}",
            err.message
        );
    }
}
