//! Behaviour of the write-ahead log through its public Rust API.

#[path = "support/hookfs.rs"]
mod hookfs;

use evstore::wal::{segment, FsyncPolicy, Position, Record, RecordRef, Wal, WalConfig};
use evstore::ErrorKind;
use hookfs::{Hook, HookFs, Opened};
use std::path::Path;
use std::time::Duration;

fn config(dir: &Path, policy: FsyncPolicy) -> WalConfig {
    let mut c = WalConfig::new(dir);
    c.fsync_policy = policy;
    c.max_segment_size = 1 << 20;
    c
}

fn value(i: u64) -> Vec<u8> {
    format!("record number {i} {}", "x".repeat((i % 37) as usize)).into_bytes()
}

fn append_n(wal: &Wal, from: u64, n: u64) -> Vec<Position> {
    (from..from + n)
        .map(|i| {
            wal.append(&RecordRef::put(&i.to_le_bytes(), &value(i)))
                .unwrap()
        })
        .collect()
}

fn read_all(wal: &Wal) -> Vec<(Position, Record)> {
    let mut r = wal.read_from(Position::default()).unwrap();
    let mut out = Vec::new();
    while let Some(x) = r.next_record().unwrap() {
        out.push(x);
    }
    out
}

fn check_sequence(records: &[(Position, Record)], n: u64) {
    assert_eq!(records.len() as u64, n);
    for (i, (_, r)) in records.iter().enumerate() {
        assert_eq!(r.key, (i as u64).to_le_bytes());
        assert_eq!(r.value, value(i as u64));
    }
}

#[test]
fn appended_records_read_back_after_reopen_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, info) = Wal::open(config(dir.path(), FsyncPolicy::Os)).unwrap();
        assert_eq!(info.valid_records, 0);
        append_n(&wal, 0, 100);
        check_sequence(&read_all(&wal), 100);
        wal.close().unwrap();
    }
    let (wal, info) = Wal::open(config(dir.path(), FsyncPolicy::Os)).unwrap();
    assert_eq!(info.valid_records, 100);
    assert!(!info.corruption_detected);
    append_n(&wal, 100, 50);
    check_sequence(&read_all(&wal), 150);
}

#[test]
fn rotation_spans_many_segments_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FsyncPolicy::Os);
    c.max_segment_size = 64 << 10;
    let positions = {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        let p = append_n(&wal, 0, 10000);
        wal.close().unwrap();
        p
    };
    let ids = segment::list(&evstore::wal::vfs::OsVfs, dir.path()).unwrap();
    assert!(ids.len() > 5, "{ids:?}");
    for &id in &ids[..ids.len() - 1] {
        let len = std::fs::metadata(segment::path(dir.path(), id))
            .unwrap()
            .len();
        assert!(
            len <= 64 << 10,
            "segment {id} finalized to its length, got {len}"
        );
    }
    // (Read before the reopen below preallocates the active segment again.)
    let last = *ids.last().unwrap();
    let last_len = std::fs::metadata(segment::path(dir.path(), last))
        .unwrap()
        .len();
    let (wal, info) = Wal::open(c).unwrap();
    assert_eq!(info.valid_records, 10000);
    // Finalized: no segment keeps its preallocated zeros after rotation or close.
    assert_eq!(info.zero_tail_bytes, 0);
    assert_eq!(
        last_len,
        wal.current_position().offset,
        "close cut the active segment"
    );
    assert_eq!(info.segments_scanned, ids.len() as u64);
    check_sequence(&read_all(&wal), 10000);
    // Reading from any returned position gives that record.
    for i in [0usize, 1, 777, 2500, 9999] {
        let mut r = wal.read_from(positions[i]).unwrap();
        let (p, rec) = r.next_record().unwrap().unwrap();
        assert_eq!(p, positions[i]);
        assert_eq!(rec.key, (i as u64).to_le_bytes());
    }
}

#[test]
fn a_record_larger_than_a_segment_is_refused_and_large_ones_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FsyncPolicy::Os);
    c.max_segment_size = 8 << 20;
    let (wal, _) = Wal::open(c).unwrap();
    let huge = vec![7u8; 9 << 20];
    let err = wal.append(&RecordRef::put(b"k", &huge)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge);
    // Records bigger than the read buffer (1 MiB), around it, and across rotation.
    let sizes = [100, 3 << 20, 1 << 20, (1 << 20) + 1, 5 << 20, 10];
    for (i, &n) in sizes.iter().enumerate() {
        let v: Vec<u8> = (0..n).map(|j| (j * 31 + i) as u8).collect();
        wal.append(&RecordRef::put(&[i as u8], &v)).unwrap();
    }
    let all = read_all(&wal);
    assert_eq!(all.len(), sizes.len());
    for (i, (_, r)) in all.iter().enumerate() {
        assert_eq!(r.value.len(), sizes[i]);
        assert!(r
            .value
            .iter()
            .enumerate()
            .all(|(j, &b)| b == (j * 31 + i) as u8));
    }
}

#[test]
fn a_cut_at_every_byte_of_the_last_records_recovers_the_complete_ones() {
    let src = tempfile::tempdir().unwrap();
    let mut c = config(src.path(), FsyncPolicy::Os);
    c.preallocate = false;
    let positions = {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        let p = append_n(&wal, 0, 300);
        wal.close().unwrap();
        p
    };
    let seg = segment::path(src.path(), 0);
    let full = std::fs::read(&seg).unwrap();
    let start = positions[295].offset;
    for cut in start..full.len() as u64 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment::path(dir.path(), 0), &full[..cut as usize]).unwrap();
        let mut c = config(dir.path(), FsyncPolicy::Os);
        c.preallocate = false;
        let (wal, info) = Wal::open(c).unwrap();
        let complete = positions.iter().filter(|p| {
            let i = positions.iter().position(|q| q == *p).unwrap();
            let end = positions.get(i + 1).map_or(full.len() as u64, |n| n.offset);
            end <= cut
        });
        let n = complete.count() as u64;
        assert_eq!(info.valid_records, n, "cut at {cut}");
        let torn = positions.iter().any(|p| p.offset == cut);
        assert_eq!(info.corruption_detected, !torn, "cut at {cut}");
        check_sequence(&read_all(&wal), n);
        // Appends continue right after the last complete record.
        append_n(&wal, n, 2);
        check_sequence(&read_all(&wal), n + 2);
    }
}

#[test]
fn a_zero_filled_preallocated_tail_is_the_end_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), FsyncPolicy::Always);
    {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        append_n(&wal, 0, 50);
        // A crash: no close, so no finalize. Leak the log so Drop does not close it.
        std::mem::forget(wal);
    }
    let len = std::fs::metadata(segment::path(dir.path(), 0))
        .unwrap()
        .len();
    assert_eq!(len, 1 << 20, "preallocated to the segment size");
    let (wal, info) = Wal::open(c).unwrap();
    assert_eq!(info.valid_records, 50);
    assert!(!info.corruption_detected);
    assert_eq!(info.bytes_truncated, 0);
    assert!(info.zero_tail_bytes > 0);
    check_sequence(&read_all(&wal), 50);
}

fn flip_bit(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_flipped_bit_in_the_last_record_truncates_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), FsyncPolicy::Os);
    let positions = {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        let p = append_n(&wal, 0, 20);
        wal.close().unwrap();
        p
    };
    flip_bit(&segment::path(dir.path(), 0), positions[19].offset + 5);
    let (wal, info) = Wal::open(c).unwrap();
    assert_eq!(info.valid_records, 19);
    assert!(info.corruption_detected);
    assert!(info.bytes_truncated > 0);
    check_sequence(&read_all(&wal), 19);
}

#[test]
fn a_flipped_bit_in_an_earlier_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), FsyncPolicy::Os);
    let positions = {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        let p = append_n(&wal, 0, 20);
        wal.close().unwrap();
        p
    };
    flip_bit(&segment::path(dir.path(), 0), positions[10].offset + 5);
    let err = Wal::open(c).err().expect("open must fail");
    assert_eq!(err.kind, ErrorKind::Corrupt);
    assert!(err.message.contains("000000.wal"), "{}", err.message);
    assert!(
        err.message.contains(&positions[10].offset.to_string()),
        "{}",
        err.message
    );
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FsyncPolicy::Os);
    c.max_segment_size = 64 << 10;
    {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        append_n(&wal, 0, 6000);
        wal.close().unwrap();
    }
    assert!(
        segment::list(&evstore::wal::vfs::OsVfs, dir.path())
            .unwrap()
            .len()
            >= 4
    );
    // Damage the last record of segment 1 (a torn tail, were it the last segment).
    let p = segment::path(dir.path(), 1);
    let len = std::fs::metadata(&p).unwrap().len();
    flip_bit(&p, len - 2);
    let err = Wal::open(c.clone()).err().expect("open must fail");
    assert_eq!(err.kind, ErrorKind::Corrupt);
    assert!(err.message.contains("000001.wal"), "{}", err.message);
    // A missing middle segment is a hole too.
    flip_bit(&p, len - 2);
    std::fs::remove_file(segment::path(dir.path(), 2)).unwrap();
    let err = Wal::open(c).err().expect("open must fail");
    assert_eq!(err.kind, ErrorKind::Corrupt);
    assert!(err.message.contains("000002.wal"), "{}", err.message);
}

#[test]
fn a_batch_cut_short_disappears_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FsyncPolicy::Os);
    c.preallocate = false;
    let values: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 40]).collect();
    let (first, end) = {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        wal.append(&RecordRef::put(b"solo", b"before")).unwrap();
        let recs: Vec<RecordRef> = values.iter().map(|v| RecordRef::put(b"b", v)).collect();
        let a = wal.append_batch(&recs).unwrap();
        let end = wal.current_position().offset;
        wal.close().unwrap();
        (a.positions[0].offset, end)
    };
    let full = std::fs::read(segment::path(dir.path(), 0)).unwrap();
    for cut in first..end {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(segment::path(d.path(), 0), &full[..cut as usize]).unwrap();
        let mut c2 = c.clone();
        c2.dir = d.path().to_path_buf();
        let (wal, info) = Wal::open(c2).unwrap();
        assert_eq!(info.valid_records, 1, "cut at {cut}");
        assert_eq!(read_all(&wal).len(), 1);
    }
    let (wal, _) = Wal::open(c).unwrap();
    assert_eq!(read_all(&wal).len(), 4);
}

#[test]
fn reserved_flag_bits_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(config(dir.path(), FsyncPolicy::Os)).unwrap();
    let mut r = RecordRef::put(b"k", b"v");
    r.reserved = 0xE0;
    r.tombstone = true;
    r.ttl_ms = Some(1234);
    wal.append(&r).unwrap();
    let all = read_all(&wal);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.reserved, 0xE0);
    assert!(all[0].1.tombstone);
    assert_eq!(all[0].1.ttl_ms, Some(1234));
}

#[test]
fn delete_segments_before_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FsyncPolicy::Os);
    c.max_segment_size = 64 << 10;
    let (wal, _) = Wal::open(c).unwrap();
    let positions = append_n(&wal, 0, 6000);
    let active = wal.current_position().segment_id;
    assert!(active >= 3);
    let deleted = wal.delete_segments_before(positions[5999]).unwrap();
    assert_eq!(deleted as u64, active);
    assert_eq!(
        segment::list(&evstore::wal::vfs::OsVfs, dir.path()).unwrap(),
        vec![active]
    );
    let far = Position {
        segment_id: active + 10,
        offset: 0,
    };
    assert_eq!(wal.delete_segments_before(far).unwrap(), 0);
    assert_eq!(
        segment::list(&evstore::wal::vfs::OsVfs, dir.path()).unwrap(),
        vec![active]
    );
    append_n(&wal, 6000, 10);
}

#[test]
fn concurrent_appenders_share_fsyncs_under_always() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FsyncPolicy::Always);
    c.max_segment_size = 16 << 20;
    let wal = std::sync::Arc::new(Wal::open(c).unwrap().0);
    let per_thread = 300u64;
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let v = format!("t{t} i{i}").into_bytes();
                        (wal.append(&RecordRef::put(&[t as u8], &v)).unwrap(), v)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let written: Vec<(Position, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    for (pos, v) in &written {
        let (p, rec) = wal.read_from(*pos).unwrap().next_record().unwrap().unwrap();
        assert_eq!(p, *pos);
        assert_eq!(&rec.value, v);
    }
    let stats = wal.stats();
    assert_eq!(stats.records, 8 * per_thread);
    assert!(
        stats.fsyncs < stats.records / 2,
        "{} fsyncs for {} appends",
        stats.fsyncs,
        stats.records
    );
}

#[test]
fn the_batch_policy_syncs_within_the_window_without_further_appends() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), FsyncPolicy::Batch(Duration::from_millis(20)));
    let (wal, _) = Wal::open(c).unwrap();
    wal.append(&RecordRef::put(b"k", b"lonely")).unwrap();
    let (appended, durable) = wal.lsns();
    assert!(durable < appended);
    std::thread::sleep(Duration::from_millis(60));
    let (appended, durable) = wal.lsns();
    assert_eq!(durable, appended, "the flusher made it durable on its own");
    assert!(wal.stats().fsyncs >= 1);
}

/// Appends that never pause get one fdatasync a nap (half the window) from the flusher,
/// not one after another: the records appended during a sync are dirty since that sync
/// began, not since the first record it covered. (A count bounded by the time taken:
/// a slow machine only makes it smaller.) All of them are durable within the window.
#[test]
fn the_batch_flusher_syncs_once_a_nap_under_appends_that_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), FsyncPolicy::Batch(Duration::from_millis(40)));
    c.max_segment_size = 64 << 20;
    let (wal, _) = Wal::open(c).unwrap();
    let started = std::time::Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_millis(400) {
        wal.append_written(&[RecordRef::put(b"k", &value(n))])
            .unwrap();
        n += 1;
    }
    let naps = started.elapsed().as_millis() as u64 / 20;
    let fsyncs = wal.stats().fsyncs;
    // One a nap, one more for the sync under way when the appends stopped.
    assert!(
        fsyncs <= naps + 2,
        "{fsyncs} fsyncs for {n} appends in {naps} naps of 20 ms"
    );
    // Within the window on an idle machine; waited for up to 10 s on a loaded one.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while wal.lsns().1 < wal.lsns().0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (appended, durable) = wal.lsns();
    assert_eq!(
        durable, appended,
        "the flusher made the last appends durable"
    );
}

#[test]
fn a_reader_sees_records_appended_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(config(dir.path(), FsyncPolicy::Os)).unwrap();
    append_n(&wal, 0, 5);
    let mut r = wal.read_from(Position::default()).unwrap();
    for _ in 0..5 {
        assert!(r.next_record().unwrap().is_some());
    }
    assert!(r.next_record().unwrap().is_none());
    append_n(&wal, 5, 3);
    for i in 5..8u64 {
        assert_eq!(r.next_record().unwrap().unwrap().1.key, i.to_le_bytes());
    }
}

#[test]
fn a_read_only_log_modifies_nothing_and_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), FsyncPolicy::Os);
    {
        let (wal, _) = Wal::open(c.clone()).unwrap();
        append_n(&wal, 0, 10);
        wal.close().unwrap();
    }
    let p = segment::path(dir.path(), 0);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(&[1, 2, 3]); // a tail still being written
    std::fs::write(&p, &bytes).unwrap();
    let mut ro = c.clone();
    ro.read_only = true;
    let (wal, info) = Wal::open(ro).unwrap();
    assert_eq!(info.valid_records, 10);
    assert_eq!(
        wal.append(&RecordRef::put(b"k", b"v")).unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    check_sequence(&read_all(&wal), 10);
    drop(wal);
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing was modified");
}

#[test]
fn batch_and_os_appends_make_no_syscall_per_record() {
    for policy in [
        FsyncPolicy::Os,
        FsyncPolicy::Batch(Duration::from_millis(50)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), policy);
        c.max_segment_size = 16 << 20;
        let (wal, _) = Wal::open(c).unwrap();
        append_n(&wal, 0, 20_000);
        wal.flush().unwrap();
        let stats = wal.stats();
        assert_eq!(stats.records, 20_000);
        assert!(
            stats.writes < 200,
            "{policy:?}: {} writes for {} records",
            stats.writes,
            stats.records
        );
        check_sequence(&read_all(&wal), 20_000);
    }
}

/// A hook for the real file system (`HookFs`) under which files' `sync_data` stalls,
/// once armed, until the gate opens.
#[derive(Debug, Default)]
struct SyncGate {
    /// (armed, a sync is waiting, open)
    state: std::sync::Mutex<(bool, bool, bool)>,
    cv: std::sync::Condvar,
}

impl SyncGate {
    fn pass(&self) {
        let mut st = self.state.lock().unwrap();
        if !st.0 {
            return;
        }
        st.1 = true;
        self.cv.notify_all();
        while !st.2 {
            st = self.cv.wait(st).unwrap();
        }
    }

    fn wait_for_a_sync(&self) {
        let mut st = self.state.lock().unwrap();
        while !st.1 {
            st = self.cv.wait(st).unwrap();
        }
    }

    fn set(&self, f: impl FnOnce(&mut (bool, bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.cv.notify_all();
    }
}

impl Hook for SyncGate {
    fn sync_data(&self, f: &Opened) -> std::io::Result<()> {
        self.pass();
        f.file.sync_data()
    }
}

/// Issue 25: the batch flusher does not hold the log's I/O lock through its fdatasync,
/// so an append that writes its records at once (`append_written`, what the event store
/// does under EVS_FSYNC_BATCH) goes on while the sync runs. The sync is let go only once
/// that append has returned: an append that waited for it would wait forever (the
/// limit below only turns that hang into a failure).
#[test]
fn an_append_does_not_wait_for_the_batch_flushers_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let gate = std::sync::Arc::new(SyncGate::default());
    let mut c = config(dir.path(), FsyncPolicy::Batch(Duration::from_millis(1)));
    c.vfs = HookFs::arc(&gate);
    let (wal, _) = Wal::open(c).unwrap();
    gate.set(|st| st.0 = true);
    wal.append_written(&[RecordRef::put(&0u64.to_le_bytes(), &value(0))])
        .unwrap();
    // The flusher syncs the dirty log within its window, and stalls there.
    gate.wait_for_a_sync();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = wal.append_written(&[RecordRef::put(&1u64.to_le_bytes(), &value(1))]);
            tx.send(r.is_ok()).unwrap();
        });
        let done = rx.recv_timeout(Duration::from_secs(60));
        gate.set(|st| st.2 = true);
        assert_eq!(
            done,
            Ok(true),
            "an append waited for the flusher's fdatasync"
        );
    });
    check_sequence(&read_all(&wal), 2);
    wal.close().unwrap();
}
