//! What recovery reads of a crashed writer's segment: its records, not the preallocated
//! tail past them. Reading that tail puts zero pages in the page cache, which ext4 then
//! reports as data, so the tail check read all of it again (a 300,000-event store killed
//! mid-segment took 186 ms to open, 79 ms without).

#[path = "support/hookfs.rs"]
mod hookfs;

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::vfs::{self, OpenMode};
use hookfs::{Hook, HookFs, Opened};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts the bytes read through the real file system (a hook of `HookFs`).
#[derive(Debug, Default)]
struct BytesRead(AtomicU64);

impl Hook for BytesRead {
    fn read_at(&self, f: &Opened, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = f.file.read_at(buf, offset)?;
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn recovery_reads_a_crashed_segments_records_not_its_unwritten_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("s");
    let payload = [7u8; 100];
    {
        let (store, _) = Store::open(&store_dir, StoreOptions::default(), Vec::new()).unwrap();
        for i in 0..1000 {
            let s = format!("stream-{}", i % 10);
            store
                .append(&s, ExpectedVersion::Any, &[EventInput::new("T", &payload)])
                .unwrap();
        }
        store.close().unwrap();
    }
    // What a killed writer leaves: the records, then a preallocated tail never written
    // (a hole, as unwritten extents read).
    let segment = store_dir.join("events").join("000000.wal");
    let records = std::fs::metadata(&segment).unwrap().len();
    assert!(records < 256 << 10, "the records take {records} bytes");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let page_end = records.div_ceil(4096) * 4096;
    assert_eq!(
        vfs::os()
            .open(&segment, OpenMode::Read)
            .unwrap()
            .data_region(page_end)
            .unwrap(),
        None,
        "the file system reports the extended part as a hole"
    );

    let counter = Arc::new(BytesRead::default());
    let options = StoreOptions {
        vfs: HookFs::arc(&counter),
        ..StoreOptions::default()
    };
    let (store, report) = Store::open(&store_dir, options, Vec::new()).unwrap();
    assert_eq!(report.next_position, 1000);
    let read = counter.0.load(Ordering::Relaxed);
    // The records once, plus what the store reads beside them (its snapshot, if any,
    // and a page at the end): far less than the 1 MiB a scanner chunk into the tail
    // would take.
    assert!(
        read < records + (512 << 10),
        "recovery read {read} bytes of a segment with {records} bytes of records"
    );
    store.close().unwrap();
}

/// Replay counts the event types of a run of events of one type at once (one lookup a
/// run): the counts after a replay of the whole log are the counts of what was appended,
/// for runs of every length, types that come back, and the run the log ends with.
#[test]
fn replay_counts_every_event_type_whatever_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("s");
    let types = ["A", "A", "B", "A", "CC", "CC", "CC", "B", "A", "D"];
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    {
        let (store, _) = Store::open(&store_dir, StoreOptions::default(), Vec::new()).unwrap();
        for i in 0..997usize {
            let t = types[(i * i / 3) % types.len()];
            *want.entry(t.to_string()).or_default() += 1;
            let s = format!("stream-{}", i % 7);
            store
                .append(&s, ExpectedVersion::Any, &[EventInput::new(t, b"{}")])
                .unwrap();
        }
        store.close().unwrap();
    }
    // No checkpoint (a close may take one): the open replays every event.
    match std::fs::remove_dir_all(store_dir.join("snapshots")) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        r => r.unwrap(),
    }
    let (store, report) = Store::open(&store_dir, StoreOptions::default(), Vec::new()).unwrap();
    assert_eq!(report.snapshot_position, None);
    assert_eq!(report.events_replayed, 997);
    let got: std::collections::BTreeMap<String, u64> =
        store.stats().unwrap().events_by_type.into_iter().collect();
    assert_eq!(got, want);
    store.close().unwrap();
}
