//! The index files of sealed segments (`<store>/index/<segment>.idx`, issue 13): a cache
//! of what the segments say, so each test damages, removes or swaps them (or cuts the
//! power while one is written) and checks that every read still gives what the log
//! holds, and what the file becomes.

#[path = "support/faultfs.rs"]
mod faultfs;

use evstore::store::{EventInput, ExpectedVersion, Store, StoreOptions};
use evstore::wal::FsyncPolicy;
use faultfs::{Fault, FaultFs, Keep, Op, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SEGMENT: u64 = 64 << 10;
/// Events of the fixture: five or six segments, index files of several pages.
const EVENTS: u32 = 2500;

fn options() -> StoreOptions {
    StoreOptions {
        fsync: FsyncPolicy::Os,
        max_segment_size: SEGMENT,
        preallocate: false,
        ..StoreOptions::default()
    }
}

/// Event `i`'s stream and payload: seven streams, a few events with none, payloads of
/// varying length, `salt` changing their bytes (and `grow` their length).
fn event(i: u32, salt: u8, grow: usize) -> (String, Vec<u8>) {
    let stream = if i % 11 == 10 {
        String::new()
    } else {
        format!("s-{}", i % 7)
    };
    let len = 20 + (i as usize * 37) % 60 + grow;
    (stream, vec![(i as u8).wrapping_add(salt); len])
}

/// Writes `n` events into a store at `dir` (several segments of 64 KiB), closes it.
fn write_store(dir: &Path, n: u32, salt: u8, grow: usize) {
    let (store, _) = Store::open(dir, options(), Vec::new()).unwrap();
    for i in 0..n {
        let (stream, payload) = event(i, salt, grow);
        if stream.is_empty() {
            store.append_event("T", &payload).unwrap();
        } else {
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    &[EventInput::new("T", &payload)],
                )
                .unwrap();
        }
    }
    store.close().unwrap();
}

/// Everything the reads that use the index say about a store.
#[derive(Debug, PartialEq, Eq)]
struct View {
    /// Forward: position, stream, version, timestamp, payload.
    all: Vec<(u64, String, u64, u64, Vec<u8>)>,
    backward: Vec<u64>,
    /// By stream: positions forward, positions backward, the last three backward.
    streams: BTreeMap<String, [Vec<u64>; 3]>,
    /// Of every 5th event: the position after its timestamp and after one less.
    after: Vec<(u64, u64)>,
    /// Every 3rd event, read by position.
    by_position: Vec<Vec<u8>>,
    listed: Vec<(String, u64, u64)>,
    /// Positions of the category "s-" from 0 and from a third of the way, and of "s-3".
    categories: [Vec<u64>; 3],
}

fn positions(mut c: Box<dyn evstore::store::EventCursor>, max: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while out.len() < max {
        match c.next().unwrap() {
            Some(e) => out.push(e.position),
            None => break,
        }
    }
    out
}

fn positions_all(mut c: Box<dyn evstore::store::TailCursor>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(e.position);
    }
    out
}

fn view(store: &Store) -> View {
    let mut all = Vec::new();
    let mut c = store.read_all(0).unwrap();
    while let Some(e) = c.next().unwrap() {
        all.push((
            e.position,
            e.stream.to_string(),
            e.stream_version,
            e.timestamp_us,
            e.payload.to_vec(),
        ));
    }
    let n = store.next_position().unwrap();
    let backward = positions(store.read_all_backward(n).unwrap(), usize::MAX);
    let mut streams = BTreeMap::new();
    for s in store.list_streams().unwrap() {
        let fwd = positions(store.read_stream(&s.name, 0).unwrap(), usize::MAX);
        let back = positions(
            store.read_stream_backward(&s.name, u64::MAX).unwrap(),
            usize::MAX,
        );
        let last3 = positions(store.read_stream_backward(&s.name, s.version).unwrap(), 3);
        streams.insert(s.name, [fwd, back, last3]);
    }
    let after = all
        .iter()
        .step_by(5)
        .map(|e| {
            (
                store.position_after(e.3).unwrap(),
                store.position_after(e.3 - 1).unwrap(),
            )
        })
        .collect();
    let by_position = (0..n)
        .step_by(3)
        .map(|p| store.read_event(p).unwrap().payload)
        .collect();
    let listed = store
        .list_streams()
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.version, s.first_position))
        .collect();
    let categories = [("s-", 0), ("s-", n / 3), ("s-3", 0)]
        .map(|(prefix, from)| positions_all(store.read_category(prefix, from).unwrap()));
    View {
        categories,
        all,
        backward,
        streams,
        after,
        by_position,
        listed,
    }
}

fn open_view(dir: &Path, read_only: bool) -> (View, evstore::store::OpenReport) {
    let opts = StoreOptions {
        read_only,
        ..options()
    };
    let (store, report) = Store::open(dir, opts, Vec::new()).unwrap();
    let v = view(&store);
    store.close().unwrap();
    // The categories are what the events say.
    let of = |prefix: &str, from: u64| -> Vec<u64> {
        v.all
            .iter()
            .filter(|e| e.0 >= from && e.1.starts_with(prefix))
            .map(|e| e.0)
            .collect()
    };
    let third = v.all.len() as u64 / 3;
    assert_eq!(v.categories, [of("s-", 0), of("s-", third), of("s-3", 0)]);
    (v, report)
}

fn index_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir.join("index")) else {
        return BTreeMap::new();
    };
    rd.map(|e| {
        let e = e.unwrap();
        (
            e.file_name().into_string().unwrap(),
            std::fs::read(e.path()).unwrap(),
        )
    })
    .collect()
}

/// A store of `EVENTS` events with its index files, what its reads give, and its files.
fn fixture() -> (tempfile::TempDir, View, BTreeMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), EVENTS, 0, 0);
    let files = index_files(dir.path());
    let (v, _) = open_view(dir.path(), false);
    assert_eq!(v.all.len(), EVENTS as usize);
    (dir, v, files)
}

fn idx(dir: &Path, segment: u64) -> PathBuf {
    dir.join("index").join(format!("{segment:06}.idx"))
}

#[test]
fn sealed_segments_get_index_files_that_reads_agree_with() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), options(), Vec::new()).unwrap();
    for i in 0..EVENTS {
        let (stream, payload) = event(i, 0, 0);
        if stream.is_empty() {
            store.append_event("T", &payload).unwrap();
        } else {
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    &[EventInput::new("T", &payload)],
                )
                .unwrap();
        }
    }
    let live = view(&store);
    store.close().unwrap();
    let segments = std::fs::read_dir(dir.path().join("events"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count();
    assert!(segments >= 4, "{segments} segments");
    let files = index_files(dir.path());
    // Every segment but the last (appends go on there) has its file.
    assert_eq!(files.len(), segments - 1, "{:?}", files.keys());
    let (reopened, report) = open_view(dir.path(), false);
    assert!(report.index_files_rebuilt.is_empty(), "{report:?}");
    assert_eq!(reopened, live);
    let (ro, _) = open_view(dir.path(), true);
    assert_eq!(ro, live);
    assert_eq!(
        index_files(dir.path()),
        files,
        "opens leave good files alone"
    );
}

#[test]
fn a_missing_index_file_is_rebuilt_from_its_segment() {
    let (dir, want, files) = fixture();
    std::fs::remove_file(idx(dir.path(), 1)).unwrap();
    let (got, _) = open_view(dir.path(), false);
    assert_eq!(got, want);
    assert_eq!(index_files(dir.path()), files);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let (got, _) = open_view(dir.path(), false);
    assert_eq!(got, want);
    assert_eq!(index_files(dir.path()), files);
}

/// Each way a file can be damaged, for a writable and a read-only open: the reads give
/// what the log holds; a writable open puts the right file back, a read-only one leaves
/// the damaged file as it is.
#[test]
fn a_damaged_index_file_is_never_trusted_and_is_rebuilt() {
    let (dir, want, files) = fixture();
    let name = "000001.idx";
    let good = &files[name];
    assert!(good.len() > 3 * 4096, "the file has several pages");
    let mut flip_header = good.clone();
    flip_header[9] ^= 0x01;
    let mut flip_body = good.clone();
    flip_body[2 * 4096 + 100] ^= 0x40;
    let mut flip_last_page = good.clone();
    let at = good.len() - 20;
    flip_last_page[at] ^= 0x80;
    let mut wrong_crc = good.clone();
    wrong_crc[4092] ^= 0xFF;
    let truncated = good[..good.len() - 4096].to_vec();
    let cut_to_header = good[..100].to_vec();
    let mut longer = good.clone();
    longer.extend_from_slice(&[0u8; 100]);
    let cases = [
        ("header bit flip", flip_header),
        ("body bit flip", flip_body),
        ("last page bit flip", flip_last_page),
        ("wrong page CRC", wrong_crc),
        ("truncated by a page", truncated),
        ("cut inside the header", cut_to_header),
        ("bytes after the end", longer),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        let path = dir.path().join("index").join(name);
        std::fs::write(&path, &bytes).unwrap();
        let (got, _) = open_view(dir.path(), true);
        assert_eq!(got, want, "{what}, read-only");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: read-only wrote"
        );
        let (got, _) = open_view(dir.path(), false);
        assert_eq!(got, want, "{what}, writable");
        assert_eq!(&std::fs::read(&path).unwrap(), good, "{what}: not rebuilt");
    }
}

/// Index files of another store (same segment names, other records: the same lengths
/// with other bytes, or longer segments) and a file under another segment's name.
#[test]
fn an_index_file_that_disagrees_with_the_log_is_rebuilt() {
    let (dir, want, files) = fixture();
    for (salt, grow) in [(1u8, 0usize), (0, 50), (0, 0)] {
        let other = tempfile::tempdir().unwrap();
        write_store(other.path(), EVENTS, salt, grow);
        let theirs = index_files(other.path());
        // Even the same events differ in their timestamps (and so their records' CRCs).
        assert_ne!(theirs, files);
        for (name, bytes) in &theirs {
            if files.contains_key(name) {
                std::fs::write(dir.path().join("index").join(name), bytes).unwrap();
            }
        }
        let (got, report) = open_view(dir.path(), false);
        assert_eq!(got, want, "salt {salt} grow {grow}");
        assert_eq!(index_files(dir.path()), files, "salt {salt} grow {grow}");
        assert!(
            !report.index_files_rebuilt.is_empty(),
            "salt {salt} grow {grow}: {report:?}"
        );
    }
    // Segment 2's file under segment 1's name.
    std::fs::write(idx(dir.path(), 1), &files["000002.idx"]).unwrap();
    let (got, report) = open_view(dir.path(), false);
    assert_eq!(got, want);
    assert!(
        report.index_files_rebuilt[0].contains("000001.idx"),
        "{report:?}"
    );
    assert_eq!(index_files(dir.path()), files);
}

#[test]
fn a_read_only_open_writes_no_index_file() {
    let (dir, want, files) = fixture();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let (got, _) = open_view(dir.path(), true);
    assert_eq!(got, want);
    assert!(!dir.path().join("index").exists());
    // Nor into an empty index directory.
    std::fs::create_dir(dir.path().join("index")).unwrap();
    let (got, _) = open_view(dir.path(), true);
    assert_eq!(got, want);
    assert!(index_files(dir.path()).is_empty());
    let (got, _) = open_view(dir.path(), false);
    assert_eq!(got, want);
    assert_eq!(index_files(dir.path()), files);
}

/// A store of `EVENTS` events with a snapshot of all of them.
fn snapshotted_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), EVENTS, 0, 0);
    let (store, _) = Store::open(dir.path(), options(), Vec::new()).unwrap();
    store.snapshot().unwrap();
    store.close().unwrap();
    dir
}

/// A snapshot covers segments whose index files are gone: the store opens with every
/// event (the snapshot is used once the files are rebuilt, or passed over).
#[test]
fn a_snapshot_over_segments_without_index_files_still_opens_whole() {
    let dir = snapshotted_store();
    let (want, _) = open_view(dir.path(), false);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let (got, report) = open_view(dir.path(), true);
    assert_eq!(got, want);
    assert_eq!(report.snapshot_position, Some(EVENTS as u64), "{report:?}");
    let (got, report) = open_view(dir.path(), false);
    assert_eq!(got, want);
    assert_eq!(report.snapshot_position, Some(EVENTS as u64), "{report:?}");
}

/// Appends `n` events of 1,000 bytes to stream "s" on `store`; how many were acknowledged.
fn append_some(store: &Store, n: usize, from: u32) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        // A refused append is never in the log: the payload follows the acknowledged.
        let p = vec![(from + ok as u32) as u8; 1000];
        if store
            .append("s", ExpectedVersion::Any, &[EventInput::new("T", &p)])
            .is_ok()
        {
            ok += 1;
        }
    }
    ok
}

/// Opens the store on `fs` and checks it holds at least `acked` events, each with the
/// payload it was appended with, by position and by stream.
/// A store on `fs` under `ALWAYS` whose next appends seal a segment (and write its index
/// file), and how many events it acknowledged.
fn store_before_a_seal(fs: &FaultFs) -> (Store, usize) {
    let opts = StoreOptions {
        fsync: FsyncPolicy::Always,
        max_segment_size: SEGMENT,
        vfs: fs.arc(),
        ..StoreOptions::default()
    };
    let (store, _) = Store::open("/s", opts, Vec::new()).unwrap();
    let acked = append_some(&store, 58, 0);
    (store, acked)
}

fn check_store(fs: &FaultFs, acked: usize, what: &str) {
    let opts = StoreOptions {
        fsync: FsyncPolicy::Always,
        max_segment_size: SEGMENT,
        vfs: fs.arc(),
        ..StoreOptions::default()
    };
    let (store, report) = Store::open("/s", opts, Vec::new())
        .unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
    let n = store.next_position().unwrap() as usize;
    assert!(
        n >= acked,
        "{what}: {n} events, {acked} acknowledged ({report:?})"
    );
    let v = view(&store);
    assert_eq!(v.all.len(), n, "{what}");
    for (i, e) in v.all.iter().enumerate() {
        assert_eq!(e.4, vec![i as u8; 1000], "{what}: event {i}");
    }
    assert_eq!(
        v.streams["s"][0],
        (0..n as u64).collect::<Vec<_>>(),
        "{what}"
    );
    store.close().unwrap();
}

/// A power cut after each operation of the stretch in which a segment seals (the log's
/// rotation, then the index file's temporary file, write, fsync, rename, directory
/// fsync), keeping only what was synced, or half of the rest torn: the store opens with
/// every acknowledged event, and reads by stream agree with the log.
#[test]
fn a_power_cut_while_an_index_file_is_written_loses_no_acknowledged_event() {
    for keep in [Keep::Synced, Keep::HalfTorn, Keep::All] {
        let mut k = 1;
        loop {
            let fs = FaultFs::new();
            let (store, mut acked) = store_before_a_seal(&fs);
            fs.set_plan(Plan {
                kinds: Op::MUTATING.to_vec(),
                cut_at: Some((k, keep)),
                ..Plan::default()
            });
            acked += append_some(&store, 12, acked as u32);
            let cut = fs.cut_image();
            let _ = store.close();
            drop(store);
            let Some(image) = cut else {
                assert!(
                    !fs.files_in(Path::new("/s/index")).is_empty(),
                    "the stretch sealed a segment"
                );
                break;
            };
            check_store(
                &FaultFs::from_image(&image),
                acked,
                &format!("{keep:?} cut {k}"),
            );
            k += 1;
        }
        assert!(k > 10, "{keep:?}: only {k} operations");
        println!("FIGURE index_file_cut_points_{keep:?} {}", k - 1);
    }
}

/// Each operation of the same stretch failing (EIO, ENOSPC, a torn write) instead: a
/// failed index file write never fails an append; the store reopens on the same file
/// system with every acknowledged event.
#[test]
fn a_failed_operation_while_an_index_file_is_written_loses_no_acknowledged_event() {
    for fault in [Fault::Eio, Fault::Enospc, Fault::TornWrite] {
        let mut k = 1;
        loop {
            let fs = FaultFs::new();
            let (store, mut acked) = store_before_a_seal(&fs);
            fs.set_plan(Plan {
                kinds: Op::MUTATING.to_vec(),
                fail_at: Some(k),
                fault: Some(fault),
                ..Plan::default()
            });
            acked += append_some(&store, 12, acked as u32);
            let failed = !fs.injected().is_empty();
            fs.heal();
            let _ = store.close();
            drop(store);
            if !failed {
                break;
            }
            check_store(&fs, acked, &format!("{fault:?} at {k}"));
            k += 1;
        }
        assert!(k > 10, "{fault:?}: only {k} operations");
        println!("FIGURE index_file_failure_points_{fault:?} {}", k - 1);
    }
}

/// Bytes that are not a record after the last record of a sealed segment, under a
/// snapshot, with the index files gone (found by the recovery fuzzer): the segment is
/// indexed up to them, because the next segment starts with the next position (no event
/// can be among them); read-only and writable opens agree and use the snapshot.
#[test]
fn garbage_after_a_sealed_segments_records_ends_its_index_when_the_next_segment_follows_on() {
    let dir = snapshotted_store();
    let files = index_files(dir.path());
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let seg = dir.path().join("events/000000.wal");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0x06, 0x1c, 0x11, 0x3b, 0xe2, 0x79, 0x28, 0x89, 0x85, 0x4a]);
    std::fs::write(&seg, &bytes).unwrap();
    for read_only in [true, false] {
        let opts = StoreOptions {
            read_only,
            ..options()
        };
        let (store, report) = Store::open(dir.path(), opts, Vec::new()).unwrap();
        assert_eq!(report.snapshot_position, Some(EVENTS as u64), "{report:?}");
        for s in store.list_streams().unwrap() {
            let got = positions(store.read_stream(&s.name, 0).unwrap(), usize::MAX);
            assert_eq!(got.len() as u64, s.version + 1, "{}", s.name);
        }
        store.close().unwrap();
    }
    // The file written is the one the store wrote at the seal.
    assert_eq!(index_files(dir.path()), files);
    // A segment whose garbage is followed by a segment that does not continue the
    // positions is not indexed (the garbage might hide events).
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let next = dir.path().join("events/000001.wal");
    let mut b = std::fs::read(&next).unwrap();
    b[20] ^= 0xFF;
    std::fs::write(&next, &b).unwrap();
    // Without the index, the snapshot cannot be used and recovery meets the garbage in a
    // sealed segment: reported, as without index files.
    match Store::open(dir.path(), options(), Vec::new()) {
        Ok((_, report)) => assert!(
            report.index_files_rebuilt[0].contains("000000.wal: not indexed"),
            "{report:?}"
        ),
        Err(e) => assert_eq!(e.kind, evstore::ErrorKind::Corrupt, "{e}"),
    }
    assert!(index_files(dir.path()).is_empty());
}
