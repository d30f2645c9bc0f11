//! Replay after a crash (issue 25: an open that replays 1,000,000 events in < 100 ms)
//! stops at damage as it did: the usual envelope is decoded in one pass that only says
//! whether it decodes, and damage is then judged field by field, for its message.

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use std::path::Path;

fn options() -> StoreOptions {
    StoreOptions::default()
}

/// Appends one event.
fn append(store: &Store) -> u64 {
    let input = EventInput::new("T", b"{}");
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
            append(&store);
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
