//! What recovery reads of a crashed writer's segment: its records, not the preallocated
//! tail past them. Reading that tail puts zero pages in the page cache, which ext4 then
//! reports as data, so the tail check read all of it again (a 300,000-event store killed
//! mid-segment took 186 ms to open, 79 ms without).

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::vfs::{self, FileRef, OpenMode, Stat, Vfs, VfsFile};
use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The real file system, counting the bytes read through it.
#[derive(Debug, Default)]
struct CountingFs {
    read: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile {
    inner: FileRef,
    read: Arc<AtomicU64>,
}

impl VfsFile for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn data_region(&self, at: u64) -> io::Result<Option<(u64, u64)>> {
        self.inner.data_region(at)
    }
}

impl Vfs for CountingFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        Ok(Arc::new(CountingFile {
            inner: vfs::os().open(path, mode)?,
            read: self.read.clone(),
        }))
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        vfs::os().create_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        vfs::os().list_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        vfs::os().rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        vfs::os().remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        vfs::os().sync_dir(path)
    }
    fn stat(&self, path: &Path) -> io::Result<Stat> {
        vfs::os().stat(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        vfs::os().lock(path)
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

    let fs = Arc::new(CountingFs::default());
    let options = StoreOptions {
        vfs: fs.clone(),
        ..StoreOptions::default()
    };
    let (store, report) = Store::open(&store_dir, options, Vec::new()).unwrap();
    assert_eq!(report.next_position, 1000);
    let read = fs.read.load(Ordering::Relaxed);
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
