//! Online backup, incremental backup, point-in-time restore, verify and archiving
//! (docs/backup.md): every backup, taken while writers append (and a compaction runs),
//! opens with exactly the source's events before its position; a backup that did not
//! finish never looks complete.

mod common;
#[path = "support/faultfs.rs"]
mod faultfs;

use common::procs::{self, Children};
use evstore::store::{
    read_backup_marker, restore, verify_backup, BackupOptions, Event, EventInput, ExpectedVersion,
    MarkerState, RestorePoint, Store, StoreOptions,
};
use evstore::wal::vfs::{self, Vfs};
use evstore::wal::FsyncPolicy;
use evstore::ErrorKind;
use faultfs::{Fault, FaultFs, Op, Plan};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Small segments, so that backups meet many sealed ones; no automatic compaction.
fn opts(fsync: FsyncPolicy) -> StoreOptions {
    StoreOptions {
        fsync,
        max_segment_size: 64 * 1024,
        compaction_trigger_percent: 0,
        ..Default::default()
    }
}

fn open(dir: &Path, o: StoreOptions) -> Arc<Store> {
    Arc::new(Store::open(dir, o, Vec::new()).expect("open").0)
}

/// Every event of the store, in order.
fn events(store: &Store) -> Vec<Event> {
    let mut c = store.read_all(0).unwrap();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push(e.to_owned());
    }
    out
}

/// The events of the store at `dir` (opened read-only) and its next position.
fn events_at(dir: &Path) -> (Vec<Event>, u64) {
    let o = StoreOptions {
        read_only: true,
        ..opts(FsyncPolicy::Os)
    };
    let s = open(dir, o);
    let n = s.next_position().unwrap();
    (events(&s), n)
}

/// Checks that the backup (or restored store) at `dir` holds exactly the events of
/// `source` before `position`, event by event, and that it continues at `position`.
fn assert_prefix(dir: &Path, source: &[Event], position: u64) {
    let (got, next) = events_at(dir);
    assert_eq!(next, position, "{}: next position", dir.display());
    let want: Vec<&Event> = source.iter().filter(|e| e.position < position).collect();
    assert_eq!(got.len(), want.len(), "{}: number of events", dir.display());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{}: event at {}", dir.display(), w.position);
    }
}

fn append_one(store: &Store, stream: &str, n: usize) {
    let payload = format!("{stream}-{n}-{}", "x".repeat(100 + n % 200));
    store
        .append(
            stream,
            ExpectedVersion::Any,
            &[EventInput::new("T", payload.as_bytes())],
        )
        .expect("append");
}

/// Four threads appending (single events and atomic pairs) until `stop` is set.
fn writers(store: &Arc<Store>, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<usize>> {
    (0..4)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let stream = format!("w{t}-{}", n % 7);
                    if n % 5 == 0 {
                        let a = format!("pair-a-{t}-{n}");
                        let b = format!("pair-b-{t}-{n}");
                        let evs = [
                            EventInput::new("P", a.as_bytes()),
                            EventInput::new("P", b.as_bytes()),
                        ];
                        store
                            .append(&stream, ExpectedVersion::Any, &evs)
                            .expect("append");
                    } else {
                        append_one(&store, &stream, n);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect()
}

fn backup(store: &Store, dest: &Path) -> evstore::store::BackupInfo {
    store
        .backup(dest, &BackupOptions::default(), &mut |_| {})
        .expect("backup")
}

fn complete_at(dir: &Path) -> Option<u64> {
    match read_backup_marker(&*vfs::os(), dir) {
        Ok(Some(MarkerState::Complete { position })) => Some(position),
        _ => None,
    }
}

#[test]
fn backups_while_four_threads_append_durably_hold_exactly_the_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let store = open(&src, opts(FsyncPolicy::Always));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = writers(&store, &stop);
    let mut taken = Vec::new();
    for i in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let dest = tmp.path().join(format!("backup-{i}"));
        let info = backup(&store, &dest);
        assert_eq!(complete_at(&dest), Some(info.position));
        taken.push((dest, info.position));
    }
    stop.store(true, Ordering::Relaxed);
    let appended: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(appended > 0);
    let all = events(&store);
    assert!(taken.last().unwrap().1 > taken.first().unwrap().1);
    for (dest, position) in &taken {
        let v = verify_backup(&*vfs::os(), dest).expect("verify");
        assert_eq!(v.position, *position);
        assert_prefix(dest, &all, *position);
    }
}

/// 20 streams of 30 events, every other stream then deleted.
fn half_deleted(store: &Store) {
    for n in 0..30 {
        for s in 0..20 {
            append_one(store, &format!("s{s}"), n);
        }
    }
    for s in (0..20).step_by(2) {
        store
            .delete_stream(&format!("s{s}"), ExpectedVersion::Any, false, None)
            .unwrap();
    }
}

/// Every event appended (position -> stream and payload) and every stream deleted (the
/// position of its entry), as the appenders were told.
#[derive(Default)]
struct Journal {
    events: std::sync::Mutex<std::collections::BTreeMap<u64, (String, Vec<u8>)>>,
    deletes: std::sync::Mutex<Vec<(u64, String)>>,
}

impl Journal {
    fn append(&self, store: &Store, stream: &str, payloads: &[Vec<u8>]) {
        let evs: Vec<EventInput<'_>> = payloads.iter().map(|p| EventInput::new("T", p)).collect();
        let r = store
            .append(stream, ExpectedVersion::Any, &evs)
            .expect("append");
        let mut j = self.events.lock().unwrap();
        for (i, p) in payloads.iter().enumerate() {
            j.insert(r.first_position + i as u64, (stream.to_owned(), p.clone()));
        }
    }

    fn delete(&self, store: &Store, stream: &str) {
        let at = store
            .delete_stream(stream, ExpectedVersion::Any, false, None)
            .unwrap();
        self.deleted(at, stream);
    }

    fn appended(&self, first: u64, stream: &str, payloads: &[Vec<u8>]) {
        let mut j = self.events.lock().unwrap();
        for (i, p) in payloads.iter().enumerate() {
            j.insert(first + i as u64, (stream.to_owned(), p.clone()));
        }
    }

    fn deleted(&self, at: u64, stream: &str) {
        self.deletes.lock().unwrap().push((at, stream.to_owned()));
    }

    /// The position after the last append or delete in the journal.
    fn end(&self) -> u64 {
        let e = self
            .events
            .lock()
            .unwrap()
            .keys()
            .next_back()
            .map(|p| p + 1);
        let d = self.deletes.lock().unwrap().iter().map(|d| d.0 + 1).max();
        e.max(d).unwrap_or(0)
    }

    /// Checks the backup at `dest` of the events before `position`: verified, and a
    /// restore of it reads exactly what the journal says a store of those positions
    /// holds.
    fn check_backup(&self, dest: &Path, position: u64, scratch: &Path) {
        verify_backup(&*vfs::os(), dest).expect("verify");
        assert_eq!(complete_at(dest), Some(position), "{}", dest.display());
        let info = restore(&*vfs::os(), dest, None, scratch, RestorePoint::End).expect("restore");
        assert_eq!(info.position, position, "{}: restored", dest.display());
        let (got, next) = events_at(scratch);
        assert_eq!(next, position, "{}: next position", dest.display());
        let got: Vec<(u64, String, Vec<u8>)> = got
            .into_iter()
            .map(|e| (e.position, e.stream, e.payload))
            .collect();
        let want = self.expected(position);
        let (g, w): (BTreeSet<_>, BTreeSet<_>) = (
            got.iter().map(|e| (e.0, e.1.as_str())).collect(),
            want.iter().map(|e| (e.0, e.1.as_str())).collect(),
        );
        assert_eq!(
            got.len(),
            want.len(),
            "{}: events; not in the journal {:?}, missing {:?}",
            dest.display(),
            g.difference(&w).collect::<Vec<_>>(),
            w.difference(&g).collect::<Vec<_>>()
        );
        assert!(got == want, "{}: the events differ", dest.display());
    }

    /// What a store holding the positions before `position` reads: the events
    /// appended before it, less those of streams deleted before it.
    fn expected(&self, position: u64) -> Vec<(u64, String, Vec<u8>)> {
        let deletes = self.deletes.lock().unwrap();
        let gone = |stream: &str| deletes.iter().any(|(at, s)| *at < position && s == stream);
        self.events
            .lock()
            .unwrap()
            .range(..position)
            .filter(|(_, (s, _))| !gone(s))
            .map(|(p, (s, b))| (*p, s.clone(), b.clone()))
            .collect()
    }
}

#[test]
fn backups_while_appends_and_a_compaction_run_hold_exactly_the_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let store = open(
        &src,
        opts(FsyncPolicy::Batch(std::time::Duration::from_millis(2))),
    );
    let journal = Arc::new(Journal::default());
    let payload = |s: &str, n: usize| format!("{s}-{n}-{}", "x".repeat(150)).into_bytes();
    for n in 0..30 {
        for s in 0..20 {
            let name = format!("s{s}");
            journal.append(&store, &name, &[payload(&name, n)]);
        }
    }
    for s in (0..20).step_by(2) {
        journal.delete(&store, &format!("s{s}"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (store, stop, journal) = (store.clone(), stop.clone(), journal.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{t}-{}", n % 7);
                    let count = 1 + n % 2;
                    let ps: Vec<Vec<u8>> = (0..count).map(|i| payload(&name, n + i)).collect();
                    journal.append(&store, &name, &ps);
                    n += 1;
                }
            })
        })
        .collect();
    let compactor = {
        let (store, journal) = (store.clone(), journal.clone());
        std::thread::spawn(move || {
            let mut rewritten = 0;
            for r in 0..8 {
                for s in 0..10 {
                    let name = format!("late{r}-{s}");
                    let ps: Vec<Vec<u8>> = (0..5).map(|n| payload(&name, n)).collect();
                    journal.append(&store, &name, &ps);
                }
                // Deleted after some backups' positions: those backups must still hold
                // its events, whatever the compaction does to their segments.
                journal.delete(&store, &format!("late{r}-3"));
                rewritten += store.compact().unwrap().segments_rewritten;
            }
            rewritten
        })
    };
    let mut taken = Vec::new();
    for i in 0..10 {
        let dest = tmp.path().join(format!("backup-{i}"));
        taken.push((dest.clone(), backup(&store, &dest).position));
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
    let rewritten = compactor.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert!(rewritten > 0, "the compaction rewrote nothing");
    for (dest, position) in &taken {
        verify_backup(&*vfs::os(), dest).expect("verify");
        let (got, next) = events_at(dest);
        assert_eq!(next, *position);
        let got: Vec<(u64, String, Vec<u8>)> = got
            .into_iter()
            .map(|e| (e.position, e.stream, e.payload))
            .collect();
        let want = journal.expected(*position);
        assert_eq!(got.len(), want.len(), "{}: events", dest.display());
        assert!(got == want, "{}: the events differ", dest.display());
    }
}

#[test]
fn ten_incremental_backups_place_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let dest = tmp.path().join("backup");
    let store = open(&src, opts(FsyncPolicy::Os));
    for round in 0..10 {
        for n in 0..300 {
            append_one(&store, &format!("r{round}-{}", n % 5), n);
        }
        if round == 4 {
            store
                .delete_stream("r0-1", ExpectedVersion::Any, false, None)
                .unwrap();
            assert!(store.compact().unwrap().segments_rewritten > 0);
        }
        let info = backup(&store, &dest);
        if round > 0 {
            assert!(info.files_unchanged > 0, "round {round}: {info:?}");
        }
        assert!(info.files_linked + info.files_copied > 0, "round {round}");
        verify_backup(&*vfs::os(), &dest).expect("verify");
        assert_prefix(&dest, &events(&store), info.position);
    }
}

#[test]
fn a_backup_across_file_systems_is_copied_and_incremental_too() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let dest = tmp.path().join("backup");
    let store = open(&src, opts(FsyncPolicy::Os));
    let no_links = BackupOptions { hard_links: false };
    for round in 0..3 {
        for n in 0..400 {
            append_one(&store, &format!("c{round}"), n);
        }
        let info = store.backup(&dest, &no_links, &mut |_| {}).unwrap();
        assert_eq!(info.files_linked, 0);
        if round > 0 {
            assert!(info.files_unchanged > 0, "{info:?}");
        }
        assert_prefix(&dest, &events(&store), info.position);
    }
}

#[test]
fn progress_counts_up_to_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("store"), opts(FsyncPolicy::Os));
    for n in 0..500 {
        append_one(&store, "p", n);
    }
    let mut seen = Vec::new();
    store
        .backup(&tmp.path().join("b"), &BackupOptions::default(), &mut |p| {
            seen.push(*p)
        })
        .unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(last.files_done, last.files_total);
    assert!(seen.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done));
}

#[test]
fn a_destination_that_is_not_a_backup_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("store"), opts(FsyncPolicy::Os));
    append_one(&store, "a", 0);
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    let e = store
        .backup(&other, &BackupOptions::default(), &mut |_| {})
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    assert!(e.message.contains("holds no backup"), "{}", e.message);
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
    let inside = tmp.path().join("store").join("b");
    let e = store
        .backup(&inside, &BackupOptions::default(), &mut |_| {})
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
}

/// Every way `dir` may be used as a store refuses it as incomplete.
fn assert_refused_as_incomplete(vfs: &Arc<dyn Vfs>, dir: &Path, scratch: &Path) {
    let o = StoreOptions {
        vfs: vfs.clone(),
        ..opts(FsyncPolicy::Os)
    };
    let e = Store::open(dir, o, Vec::new()).err().expect("open refused");
    assert_eq!(e.kind, ErrorKind::Incomplete, "{e}");
    assert!(e.message.contains("incomplete"), "{}", e.message);
    let e = verify_backup(&**vfs, dir).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Incomplete, "{e}");
    let e = restore(&**vfs, dir, None, scratch, RestorePoint::End).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Incomplete, "{e}");
}

#[test]
fn a_backup_failed_at_every_step_never_looks_complete_and_leaves_the_source_alone() {
    let fs = FaultFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    vfs::create_dir_all_durable(&*vfs, Path::new("/t")).unwrap();
    let o = StoreOptions {
        vfs: vfs.clone(),
        ..opts(FsyncPolicy::Os)
    };
    let store = open(Path::new("/t/store"), o.clone());
    half_deleted(&store);
    store.compact().unwrap();
    for n in 0..100 {
        append_one(&store, "tail", n);
    }
    // Everything durable: the backup's own sync of the source then does no I/O, and
    // every counted operation is the destination's.
    store.sync().unwrap();
    let source = events(&store);
    let mut k = 0;
    loop {
        k += 1;
        let dest = PathBuf::from(format!("/t/b{k}"));
        let scratch = PathBuf::from(format!("/t/r{k}"));
        let fault = if k % 2 == 0 {
            Fault::Enospc
        } else {
            Fault::Eio
        };
        fs.set_plan(Plan {
            kinds: Op::MUTATING.to_vec(),
            fail_at: Some(k),
            fault: Some(fault),
            ..Default::default()
        });
        let before = fs.injected().len();
        let links = BackupOptions {
            hard_links: k % 3 != 0,
        };
        let result = store.backup(&dest, &links, &mut |_| {});
        let failed = fs.injected().len() > before;
        fs.set_plan(Plan::default());
        match result {
            Ok(info) => {
                assert_prefix_on(&vfs, &dest, &source, info.position);
                if !failed {
                    break;
                }
                // The one failure a backup gets over: a hard link refused, after which
                // it copies.
                let op = fs.injected().last().unwrap().0;
                assert!(
                    links.hard_links && op == Op::Create && info.files_copied > 1,
                    "step {k}: the backup hid a failed {op:?}: {info:?}"
                );
            }
            Err(e) => {
                assert!(failed, "step {k}: {e}");
                assert_eq!(e.kind, ErrorKind::Io, "step {k}: {e}");
                match read_backup_marker(&*vfs, &dest) {
                    // Failed after the marker went in (its directory's sync): every
                    // file was synced before, so it is the whole backup.
                    Ok(Some(MarkerState::Complete { position })) => {
                        assert_prefix_on(&vfs, &dest, &source, position)
                    }
                    // Failed before the first marker: not a backup at all.
                    Ok(None) => {
                        let e = verify_backup(&*vfs, &dest).unwrap_err();
                        assert_eq!(e.kind, ErrorKind::NotFound, "step {k}: {e}");
                    }
                    _ => assert_refused_as_incomplete(&vfs, &dest, &scratch),
                }
                // A second try into the same directory completes it.
                let info = backup(&store, &dest);
                assert_prefix_on(&vfs, &dest, &source, info.position);
            }
        }
        assert!(k < 500, "the backup never finished");
        assert_eq!(events(&store), source, "step {k}: the source changed");
    }
    assert!(k > 10, "only {k} steps");
}

/// `assert_prefix` for a store on `vfs`.
fn assert_prefix_on(vfs: &Arc<dyn Vfs>, dir: &Path, source: &[Event], position: u64) {
    verify_backup(&**vfs, dir).expect("verify");
    let o = StoreOptions {
        vfs: vfs.clone(),
        read_only: true,
        ..opts(FsyncPolicy::Os)
    };
    let s = open(dir, o);
    assert_eq!(s.next_position().unwrap(), position);
    let want: Vec<Event> = source
        .iter()
        .filter(|e| e.position < position)
        .cloned()
        .collect();
    assert_eq!(events(&s), want);
}

/// The child of `a_backup_killed_at_any_moment_never_looks_complete`: backs up its store
/// again and again into one directory.
#[test]
#[ignore = "a child process of a_backup_killed_at_any_moment_never_looks_complete"]
fn child() {
    let _ = procs::role();
    let src = PathBuf::from(std::env::var("EVS_SRC").unwrap());
    let dest = PathBuf::from(std::env::var("EVS_DEST").unwrap());
    let store = open(&src, opts(FsyncPolicy::Os));
    procs::report("ready");
    loop {
        for n in 0..50 {
            append_one(&store, "k", n);
        }
        // Copies (no links): a backup takes long enough to be killed inside.
        let info = store
            .backup(&dest, &BackupOptions { hard_links: false }, &mut |_| {})
            .expect("backup");
        procs::report(&format!("done {}", info.position));
    }
}

#[test]
fn a_backup_killed_at_any_moment_never_looks_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    {
        let store = open(&src, opts(FsyncPolicy::Os));
        for n in 0..20000 {
            append_one(&store, &format!("s{}", n % 9), n);
        }
    }
    for round in 0..12u64 {
        let dest = tmp.path().join(format!("b{}", round % 3));
        let mut kids = Children::new();
        let env = [
            ("EVS_SRC", src.display().to_string()),
            ("EVS_DEST", dest.display().to_string()),
        ];
        let kid = kids.spawn("child", "backer", &env);
        assert_eq!(kids.next_line().map(|l| l.1).as_deref(), Some("ready"));
        // Kill it somewhere in its first few backups.
        let mut done = 0;
        while done < round % 4 {
            let (_, line) = kids.next_line().expect("a line");
            assert!(line.starts_with("done "), "{line}");
            done += 1;
        }
        std::thread::sleep(std::time::Duration::from_micros(1500 * round));
        kids.kill(kid);
        kids.wait_all();
        let source = events_at(&src).0;
        match read_backup_marker(&*vfs::os(), &dest) {
            Ok(Some(MarkerState::Complete { position })) => {
                verify_backup(&*vfs::os(), &dest).expect("verify");
                assert_prefix(&dest, &source, position);
            }
            Ok(None) => {}
            _ => {
                let scratch = tmp.path().join(format!("r{round}"));
                assert_refused_as_incomplete(&vfs::os(), &dest, &scratch);
            }
        }
    }
}

/// A store whose event at position p has timestamp 1_000_000 * (p / 10) + ... (a clock
/// the test moves), with single events, pairs (atomic appends) and a deleted stream.
fn timed_store(dir: &Path) -> (Arc<Store>, Arc<std::sync::atomic::AtomicU64>) {
    let now = Arc::new(std::sync::atomic::AtomicU64::new(1_000_000));
    let clock = {
        let now = now.clone();
        evstore::store::Clock::new(move || now.load(Ordering::SeqCst))
    };
    let o = StoreOptions {
        clock,
        ..opts(FsyncPolicy::Os)
    };
    (open(dir, o), now)
}

#[test]
fn a_restore_to_a_position_holds_exactly_the_events_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = timed_store(&tmp.path().join("store"));
    // Positions 3k and 3k+1 are one append; 3k+2 another.
    for n in 0..400 {
        let (a, b) = (format!("a{n}"), format!("b{n}"));
        store
            .append(
                "pairs",
                ExpectedVersion::Any,
                &[
                    EventInput::new("A", a.as_bytes()),
                    EventInput::new("B", b.as_bytes()),
                ],
            )
            .unwrap();
        append_one(&store, &format!("one-{}", n % 3), n);
    }
    store
        .delete_stream("one-1", ExpectedVersion::Any, false, None)
        .unwrap();
    for n in 0..10 {
        append_one(&store, "after", n);
    }
    let source = events(&store);
    let b = tmp.path().join("backup");
    let taken = backup(&store, &b);
    let deleted_at = 1200; // the delete entry's position
    for (i, n) in [0u64, 1, 2, 3, 601, 602, 900, 1199, 1200, 1201, 1211]
        .into_iter()
        .enumerate()
    {
        let dest = tmp.path().join(format!("r{i}"));
        let info = restore(&*vfs::os(), &b, None, &dest, RestorePoint::Position(n)).unwrap();
        assert_eq!(info.backup_position, taken.position);
        // Inside an append (its second event) the point moves back to its start.
        let inside = n < 1200 && n % 3 == 1;
        assert_eq!(info.moved_to_append_start, inside, "{n}");
        let want = if inside { n - 1 } else { n };
        assert_eq!(info.position, want, "{n}");
        assert!(read_backup_marker(&*vfs::os(), &dest).unwrap().is_none());
        // Before the delete entry, the deleted stream's events are there again.
        let (got, next) = events_at(&dest);
        assert_eq!(next, want);
        let mut expect: Vec<Event> = Vec::new();
        for e in &got {
            assert!(e.position < want);
        }
        let kept: Vec<&Event> = source.iter().filter(|e| e.position < want).collect();
        if want <= deleted_at {
            // The source reads no event of the deleted stream; the restored store
            // (without the entry) reads all of them.
            let deleted = got.iter().filter(|e| e.stream == "one-1").count();
            assert_eq!(deleted > 0, want > 5, "{n}: the deleted stream's events");
            assert_eq!(got.len(), kept.len() + deleted, "{n}");
            expect.extend(got.iter().filter(|e| e.stream != "one-1").cloned());
            assert_eq!(expect.iter().collect::<Vec<_>>(), kept, "{n}");
        } else {
            assert_eq!(got.iter().collect::<Vec<_>>(), kept, "{n}");
        }
        // The restored store goes on from its point.
        let r = open(&dest, opts(FsyncPolicy::Os));
        append_one(&r, "new", 0);
        assert_eq!(r.next_position().unwrap(), want + 1);
    }
    let e = restore(
        &*vfs::os(),
        &b,
        None,
        &tmp.path().join("past"),
        RestorePoint::Position(taken.position + 1),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let e = restore(
        &*vfs::os(),
        &b,
        None,
        &tmp.path().join("r1"),
        RestorePoint::End,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
}

#[test]
fn a_restore_to_a_time_holds_the_events_at_or_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, now) = timed_store(&tmp.path().join("store"));
    for n in 0..600 {
        if n % 10 == 0 {
            now.fetch_add(1_000_000, Ordering::SeqCst);
        }
        append_one(&store, &format!("t{}", n % 4), n);
    }
    let source = events(&store);
    let b = tmp.path().join("backup");
    backup(&store, &b);
    for (i, t) in [
        0u64, 1_000_000, 2_000_000, 2_500_000, 31_000_000, 99_000_000,
    ]
    .into_iter()
    .enumerate()
    {
        let dest = tmp.path().join(format!("r{i}"));
        let info = restore(&*vfs::os(), &b, None, &dest, RestorePoint::Time(t)).unwrap();
        let want = source.iter().filter(|e| e.timestamp_us <= t).count() as u64;
        assert_eq!(info.position, want, "time {t}");
        assert_prefix(&dest, &source, want);
    }
}

#[test]
fn verify_names_a_changed_byte_of_a_record_and_of_an_index_page() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("store"), opts(FsyncPolicy::Os));
    for n in 0..1500 {
        append_one(&store, &format!("v{}", n % 6), n);
    }
    let b = tmp.path().join("backup");
    // Copies, so that changing the backup's bytes leaves the store's alone.
    let info = store
        .backup(&b, &BackupOptions { hard_links: false }, &mut |_| {})
        .unwrap();
    let v = verify_backup(&*vfs::os(), &b).unwrap();
    assert_eq!(v.position, info.position);
    assert!(v.segments > 2 && v.index_pages > 0, "{v:?}");
    let flip = |p: &Path, at: u64| {
        let mut bytes = std::fs::read(p).unwrap();
        bytes[at as usize] ^= 0x40;
        std::fs::write(p, bytes).unwrap();
    };
    let seg = b.join("events").join("000001.wal");
    flip(&seg, 5000);
    let e = verify_backup(&*vfs::os(), &b).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    assert!(e.message.contains("000001.wal offset"), "{}", e.message);
    assert!(e.message.contains("whole up to position"), "{}", e.message);
    flip(&seg, 5000);
    verify_backup(&*vfs::os(), &b).unwrap();
    let idx = b.join("index").join("000001.idx");
    flip(&idx, 4096 + 10);
    let e = verify_backup(&*vfs::os(), &b).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    assert!(
        e.message.contains("000001.idx") && e.message.contains("page 1"),
        "{}",
        e.message
    );
}

/// The position of the first record of the store's last segment (where its sealed
/// segments end).
fn sealed_end(store_dir: &Path) -> u64 {
    let log = store_dir.join("events");
    let last = *evstore::wal::segment::list(&*vfs::os(), &log)
        .unwrap()
        .last()
        .unwrap();
    let bytes = std::fs::read(evstore::wal::segment::path(&log, last)).unwrap();
    let d = evstore::wal::record::decode(&bytes).unwrap();
    u64::from_le_bytes(d.record.key.try_into().unwrap())
}

#[test]
fn archived_segments_continue_a_backup_in_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let archive = tmp.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = {
        let (archive, calls) = (archive.clone(), calls.clone());
        evstore::store::SegmentHook(Arc::new(move |id, path: &Path, change| {
            calls.lock().unwrap().push((id, change));
            if change == evstore::store::SegmentChange::Sealed {
                std::fs::copy(path, archive.join(path.file_name().unwrap())).unwrap();
            }
        }))
    };
    let o = StoreOptions {
        on_segment: Some(hook),
        ..opts(FsyncPolicy::Os)
    };
    let store = open(&src, o);
    for n in 0..800 {
        append_one(&store, &format!("a{}", n % 5), n);
    }
    let b = tmp.path().join("backup");
    let taken = backup(&store, &b);
    for n in 0..2500 {
        append_one(&store, &format!("b{}", n % 5), n);
    }
    store
        .delete_stream("a1", ExpectedVersion::Any, false, None)
        .unwrap();
    store.compact().unwrap();
    let source = events(&store);
    let sealed: Vec<u64> = {
        let c = calls.lock().unwrap();
        assert!(
            c.iter()
                .any(|c| c.1 == evstore::store::SegmentChange::Rewritten),
            "{c:?}"
        );
        c.iter()
            .filter(|c| c.1 == evstore::store::SegmentChange::Sealed)
            .map(|c| c.0)
            .collect()
    };
    // Every segment but the active one was reported once, in order.
    let active = *evstore::wal::segment::list(&*vfs::os(), &src.join("events"))
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(sealed, (0..active).collect::<Vec<_>>());
    // Lost: the store. Left: the backup and the archive.
    let dest = tmp.path().join("restored");
    let info = restore(&*vfs::os(), &b, Some(&archive), &dest, RestorePoint::End).unwrap();
    assert!(info.archived_segments > 0, "{info:?}");
    assert!(info.position > taken.position);
    assert_eq!(info.position, sealed_end(&src));
    // The archive holds the segments as they sealed (before the compaction): the
    // deleted stream's events are there, the delete entry is after the point.
    let (got, next) = events_at(&dest);
    assert_eq!(next, info.position);
    let kept: Vec<&Event> = source.iter().filter(|e| e.position < next).collect();
    let others: Vec<&Event> = got.iter().filter(|e| e.stream != "a1").collect();
    assert_eq!(others, kept);
    assert!(got.iter().any(|e| e.stream == "a1"));
    // And to a point inside the archived part.
    let mid = taken.position + 700;
    let dest = tmp.path().join("restored-mid");
    let info = restore(
        &*vfs::os(),
        &b,
        Some(&archive),
        &dest,
        RestorePoint::Position(mid),
    )
    .unwrap();
    assert_eq!(info.position, mid);
    let (got, _) = events_at(&dest);
    let kept: Vec<&Event> = source.iter().filter(|e| e.position < mid).collect();
    let others: Vec<&Event> = got.iter().filter(|e| e.stream != "a1").collect();
    assert_eq!(others, kept);
}

/// A payload of the writer process's: its stream and index, padded.
fn writer_payload(stream: &str, i: u64) -> Vec<u8> {
    format!("{stream}-{i}-{}", "x".repeat(200)).into_bytes()
}

/// The writer process of the read-only backup tests: appends (batches of 1 to 3
/// events) durably to streams of its generation `EVS_ROUND`, deletes a stream appended
/// three rounds before and compacts every round from the fourth on, reporting each as it is
/// acknowledged ("append FIRST STREAM COUNT", "deleting STREAM" before and "delete AT
/// STREAM" after a delete, "compacted N"). Starts on the parent's first go, stops on
/// its second.
#[test]
#[ignore = "a child process of the read-only backup tests"]
fn writer_child() {
    let _ = procs::role();
    let src = PathBuf::from(std::env::var("EVS_SRC").unwrap());
    let generation = procs::number("EVS_ROUND");
    let store = open(&src, opts(FsyncPolicy::Always));
    procs::report("ready");
    procs::wait_for_parent();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            procs::wait_for_parent();
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut r = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for k in 0..8u64 {
            let stream = format!("g{generation}-r{r}-s{k}");
            let count = 1 + k % 3;
            let payloads: Vec<Vec<u8>> = (0..count).map(|i| writer_payload(&stream, i)).collect();
            let evs: Vec<EventInput<'_>> =
                payloads.iter().map(|p| EventInput::new("T", p)).collect();
            let at = store
                .append(&stream, ExpectedVersion::Any, &evs)
                .expect("append")
                .first_position;
            procs::report(&format!("append {at} {stream} {count}"));
        }
        if r >= 3 {
            let victim = format!("g{generation}-r{}-s{}", r - 3, r % 8);
            procs::report(&format!("deleting {victim}"));
            let at = store
                .delete_stream(&victim, ExpectedVersion::Any, false, None)
                .expect("delete");
            procs::report(&format!("delete {at} {victim}"));
        }
        if r >= 3 {
            let c = store.compact().expect("compact");
            procs::report(&format!("compacted {}", c.segments_rewritten));
        }
        r += 1;
    }
}

/// What the parent learned from writer processes' lines.
#[derive(Default)]
struct Heard {
    /// A delete reported as begun and not as acknowledged.
    deleting: Option<String>,
    rewritten: u64,
}

impl Heard {
    fn take(&mut self, journal: &Journal, line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["append", at, stream, count] => {
                let n: u64 = count.parse().unwrap();
                let ps: Vec<Vec<u8>> = (0..n).map(|i| writer_payload(stream, i)).collect();
                journal.appended(at.parse().unwrap(), stream, &ps);
            }
            ["deleting", stream] => self.deleting = Some(stream.to_string()),
            ["delete", at, stream] => {
                journal.deleted(at.parse().unwrap(), stream);
                self.deleting = None;
            }
            ["compacted", n] => self.rewritten += n.parse::<u64>().unwrap(),
            _ => panic!("a writer's line {line:?}"),
        }
    }

    /// After a writer was killed and the next writer's recovery ran: its last operation
    /// may have been acknowledged without being reported, or written and not
    /// acknowledged (and kept by the recovery). A store opened now tells: events past the
    /// journal's end are an append's; one empty position there is the delete it began.
    fn settle(&mut self, journal: &Journal, src: &Path) {
        let (source, next) = events_at(src);
        let end = journal.end();
        let after: Vec<&Event> = source.iter().filter(|e| e.position >= end).collect();
        if let Some(first) = after.first() {
            let ps: Vec<Vec<u8>> = after.iter().map(|e| e.payload.clone()).collect();
            assert!(after.iter().all(|e| e.stream == first.stream));
            journal.appended(first.position, &first.stream, &ps);
        } else if next > end {
            let stream = self.deleting.take().expect("a delete begun");
            assert_eq!(next, end + 1, "one position more than the journal's");
            journal.deleted(end, &stream);
        }
        self.deleting = None;
        assert_eq!(journal.end(), next, "the journal holds every position");
    }
}

fn read_only(dir: &Path) -> Arc<Store> {
    let o = StoreOptions {
        read_only: true,
        ..opts(FsyncPolicy::Always)
    };
    open(dir, o)
}

/// Starts writer process `generation` on `src` and lets it go once it is open.
fn start_writer(kids: &mut Children, src: &Path, generation: u64) -> usize {
    let env = [
        ("EVS_SRC", src.display().to_string()),
        ("EVS_ROUND", generation.to_string()),
    ];
    let kid = kids.spawn("writer_child", "writer", &env);
    assert_eq!(kids.next_line().map(|l| l.1).as_deref(), Some("ready"));
    kid
}

#[test]
fn backups_through_a_read_only_handle_beside_a_writer_process_hold_exactly_the_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let journal = Journal::default();
    let mut heard = Heard::default();
    let mut kids = Children::new();
    let kid = start_writer(&mut kids, &src, 0);
    let ro = read_only(&src);
    kids.go(kid);
    let mut taken = Vec::new();
    for i in 0..8 {
        // Six directories, two of them backed up into again (incremental); every other
        // backup copies its sealed segments (a longer time for a compaction to wait).
        let dest = tmp.path().join(format!("backup-{}", i % 6));
        let o = BackupOptions {
            hard_links: i % 2 == 0,
        };
        let info = ro.backup(&dest, &o, &mut |_| {}).expect("backup");
        taken.retain(|t: &(PathBuf, u64)| t.0 != dest);
        taken.push((dest, info.position));
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    kids.go(kid);
    while let Some((_, line)) = kids.next_line() {
        heard.take(&journal, &line);
    }
    kids.wait_all();
    assert!(
        heard.rewritten > 0,
        "the writer's compactions rewrote nothing"
    );
    let positions: BTreeSet<u64> = taken.iter().map(|t| t.1).collect();
    assert!(
        positions.len() > 2,
        "the backups did not follow the writer: {positions:?}"
    );
    for (i, (dest, position)) in taken.iter().enumerate() {
        journal.check_backup(dest, *position, &tmp.path().join(format!("restored-{i}")));
    }
}

#[test]
fn a_writer_process_killed_during_a_read_only_backup_leaves_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let journal = Journal::default();
    let mut heard = Heard::default();
    let mut taken = Vec::new();
    let mut ro = None;
    for generation in 0..4u64 {
        let mut kids = Children::new();
        let kid = start_writer(&mut kids, &src, generation);
        // The last writer's unacknowledged records its recovery kept count too.
        heard.settle(&journal, &src);
        // One handle follows every writer in turn (and their recoveries).
        let ro = ro.get_or_insert_with(|| read_only(&src));
        kids.go(kid);
        for i in 0..3u64 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let dest = tmp.path().join(format!("b{generation}-{i}"));
            let o = BackupOptions { hard_links: false };
            // The last one kills the writer once the backup has placed a file or more.
            let kill_at = if i == 2 { 1 + generation } else { u64::MAX };
            let mut killed = false;
            let info = ro
                .backup(&dest, &o, &mut |p| {
                    if !killed && p.files_done >= kill_at.min(p.files_total) {
                        kids.kill(kid);
                        killed = true;
                    }
                })
                .expect("backup");
            taken.push((dest, info.position));
        }
        while let Some((_, line)) = kids.next_line() {
            heard.take(&journal, &line);
        }
        kids.wait_all();
        // After the writer's death, before the next one: the handle still backs up.
        let dest = tmp.path().join(format!("b{generation}-after"));
        let info = ro
            .backup(&dest, &BackupOptions::default(), &mut |_| {})
            .expect("backup");
        taken.push((dest, info.position));
    }
    drop(open(&src, opts(FsyncPolicy::Always)));
    heard.settle(&journal, &src);
    for (i, (dest, position)) in taken.iter().enumerate() {
        journal.check_backup(dest, *position, &tmp.path().join(format!("restored-{i}")));
    }
    assert!(
        heard.rewritten > 0,
        "the writers' compactions rewrote nothing"
    );
}

#[test]
fn an_index_file_left_beside_a_rewritten_segment_stays_out_of_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    drop(open(&src, opts(FsyncPolicy::Os)));
    half_deleted(&open(&src, opts(FsyncPolicy::Os)));
    let idx_dir = src.join("index");
    let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&idx_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let rewritten = open(&src, opts(FsyncPolicy::Os))
        .compact()
        .unwrap()
        .segments_rewritten;
    assert!(rewritten > 0);
    // What a writer killed between a compaction's two renames leaves: the rewritten
    // segments beside their old index files.
    let mut put_back = 0;
    for (path, bytes) in &before {
        if std::fs::read(path).unwrap() != *bytes {
            std::fs::write(path, bytes).unwrap();
            put_back += 1;
        }
    }
    assert!(put_back > 0);
    let ro = read_only(&src);
    let source = events(&ro);
    let dest = tmp.path().join("backup");
    let info = ro
        .backup(&dest, &BackupOptions::default(), &mut |_| {})
        .expect("backup");
    verify_backup(&*vfs::os(), &dest).expect("verify");
    assert_prefix(&dest, &source, info.position);
}

#[test]
fn a_read_only_backup_takes_the_active_segment_it_read_after_a_compaction_rewrote_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let writer = open(&src, opts(FsyncPolicy::Always));
    let ro = read_only(&src);
    for n in 0..40 {
        append_one(&writer, &format!("s{}", n % 4), n);
    }
    writer
        .delete_stream("s1", ExpectedVersion::Any, false, None)
        .unwrap();
    ro.refresh().unwrap();
    let source = events(&ro);
    // The segment the handle was reading is sealed and rewritten shorter: the handle
    // counted its records in the file it opened.
    assert!(writer.compact().unwrap().segments_rewritten > 0);
    let dest = tmp.path().join("backup");
    let info = ro
        .backup(&dest, &BackupOptions::default(), &mut |_| {})
        .expect("backup");
    assert_eq!(info.position, 41);
    verify_backup(&*vfs::os(), &dest).expect("verify");
    assert_prefix(&dest, &source, info.position);
}

#[test]
fn a_compaction_in_the_writing_process_waits_for_a_read_only_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let writer = open(&src, opts(FsyncPolicy::Always));
    half_deleted(&writer);
    for n in 0..300 {
        append_one(&writer, "late", n);
    }
    let ro = read_only(&src);
    let source = events(&ro);
    let dest = tmp.path().join("backup");
    let mut compactor = None;
    let info = ro
        .backup(&dest, &BackupOptions { hard_links: false }, &mut |_| {
            if compactor.is_some() {
                return;
            }
            // The instant is fixed: deletes after it and a compaction, whose segment
            // replacements must wait until the sealed segments are placed.
            let w = writer.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            compactor = Some(std::thread::spawn(move || {
                for stream in ["late", "s1", "s3"] {
                    w.delete_stream(stream, ExpectedVersion::Any, false, None)
                        .unwrap();
                }
                let info = w.compact().unwrap();
                let _ = tx.send(());
                info
            }));
            // Every chance for the compaction to replace segments during this backup.
            let _ = rx.recv_timeout(std::time::Duration::from_millis(500));
        })
        .expect("backup");
    let compacted = compactor.expect("progress was reported").join().unwrap();
    assert!(compacted.segments_rewritten > 0);
    verify_backup(&*vfs::os(), &dest).expect("verify");
    assert_prefix(&dest, &source, info.position);
}

/// The events of subject `user-<i>` in `events`: (erased, payloads).
fn of_subject(events: &[Event], i: usize) -> Vec<(bool, Vec<u8>)> {
    let name = format!("user-{i}");
    let mine = events
        .iter()
        .filter(|e| e.subject.as_deref() == Some(&*name));
    mine.map(|e| (e.erased, e.payload.clone())).collect()
}

/// A backup holds the subjects' key file as it was at the backup's instant (copied,
/// never linked): a subject forgotten after the backup still reads in the backup and in
/// a restore of it (to its end or to a position), one forgotten before does not; verify
/// checks the key file.
#[test]
fn a_backup_keeps_the_subjects_keys_of_its_instant() {
    let tmp = tempfile::tempdir().unwrap();
    let src = open(&tmp.path().join("src"), opts(FsyncPolicy::Always));
    for k in 0..3 {
        for i in 0..4 {
            let subject = format!("user-{i}");
            let pii = format!("PII-{i}-{k}");
            let mut e = EventInput::new("ProfileSet", pii.as_bytes());
            e.subject = Some(&subject);
            src.append(&format!("p-{i}"), ExpectedVersion::Any, &[e])
                .unwrap();
        }
    }
    src.forget_subject("user-0").unwrap();
    let dest = tmp.path().join("b");
    let position = backup(&src, &dest).position;
    src.forget_subject("user-1").unwrap();
    // After the backup: the source's appends make keys the backup need not have.
    let mut e = EventInput::new("ProfileSet", b"PII-late");
    e.subject = Some("user-9");
    src.append("p-9", ExpectedVersion::Any, &[e]).unwrap();
    verify_backup(&*vfs::os(), &dest).expect("verify");

    let whole = |i: usize| (0..3).map(move |k| (false, format!("PII-{i}-{k}").into_bytes()));
    let check = |dir: &Path, upto: usize, what: &str| {
        let (got, _) = events_at(dir);
        assert!(
            of_subject(&got, 0).iter().all(|e| e.0 && e.1.is_empty()),
            "{what}"
        );
        assert_eq!(of_subject(&got, 0).len(), upto, "{what}");
        for i in 1..4 {
            let want: Vec<_> = whole(i).take(upto).collect();
            assert_eq!(of_subject(&got, i), want, "{what}: user-{i}");
        }
    };
    check(&dest, 3, "the backup");
    let restored = tmp.path().join("r");
    restore(&*vfs::os(), &dest, None, &restored, RestorePoint::End).unwrap();
    check(&restored, 3, "restored");
    // To a point: the events of the first round only, their keys kept.
    let cut = tmp.path().join("cut");
    restore(&*vfs::os(), &dest, None, &cut, RestorePoint::Position(4)).unwrap();
    check(&cut, 1, "restored to position 4");
    // In the source, user-1 is erased now.
    assert!(of_subject(&events(&src), 1).iter().all(|e| e.0));
    assert!(position > 12);

    // A damaged key file: verify says so, naming it.
    let keys = dest.join("keys");
    let mut bytes = std::fs::read(&keys).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&keys, &bytes).unwrap();
    let e = verify_backup(&*vfs::os(), &dest).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{}", e.message);
    assert!(e.message.contains("keys"), "{}", e.message);
}
